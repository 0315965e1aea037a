"""Multi-process training under torchrun: the same training as one process, the same pseudo-classes on every rank."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganforge.train.checkpoint import load_checkpoint

RING_FLAGS = ["--data", "ring", "--model", "mlp", "--width", "32", "--steps", "20", "--batch-size", "64",
              "--checkpoint-every", "20"]


def _torchrun(tmp_path, out, nproc, flags=RING_FLAGS):
    ganforge = str(Path(sys.executable).parent / "ganforge")
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "--no-python", ganforge, "train", *flags, "--quiet", "--device", "cpu", "--precision", "fp32",
            "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return load_checkpoint(out)


@pytest.mark.slow
def test_two_process_torchrun_matches_one_process(tmp_path):
    two = _torchrun(tmp_path, tmp_path / "two", 2)
    one = _torchrun(tmp_path, tmp_path / "one", 1)
    assert two["step"] == 20
    # Same global batch, gradients averaged across ranks: the same training up to float summation order.
    for name, tensor in one["generator"].items():
        assert torch.allclose(tensor, two["generator"][name], atol=1e-4), name


@pytest.mark.slow
def test_torchrun_self_conditional_ranks_share_the_single_process_clusters(tmp_path):
    """A 2-process run conditions on the pseudo-classes one process finds (rank 0's, broadcast to the other; k-means
    sums in threads, so a run with other thread counts may differ in the last bits)."""
    from ganforge.train.clusters import fit_clusters
    from ganforge.train.data import load_data

    flags = ["--data", "digits", "--labels", "ignore", "--self-conditional", "12", "--resolution", "16", "--width",
             "8", "--steps", "4", "--batch-size", "16", "--eval-every", "0", "--sample-every", "4"]
    two = _torchrun(tmp_path, tmp_path / "two", 2, flags)
    images, labels = load_data("digits", 16, 0).stream.pool(0, seed=0)
    alone = fit_clusters(images, 12, seed=0, true_labels=labels)
    assert two["step"] == 4 and torch.allclose(two["clusters"]["centroids"], alone.centroids, atol=1e-5)
    assert two["generator_config"]["class_prior"] == pytest.approx(alone.prior, abs=2e-3)
    # found again on D's features after step 2: rank 0's clusters, broadcast, and G draws with their shares
    again = _torchrun(tmp_path, tmp_path / "again", 2, [*flags, "--recluster-every", "2"])
    assert again["clusters"]["features"] == "discriminator"
    assert again["generator_config"]["class_prior"] == again["clusters"]["prior"]
