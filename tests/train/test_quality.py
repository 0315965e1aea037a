"""End-to-end training behaviour: mode coverage on the ring, and multi-process training."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ganforge.train.checkpoint import load_checkpoint
from ganforge.train.loop import train
from ganforge.train.recipes import recipe_config


@pytest.mark.slow
def test_ring_recipe_cut_short_captures_all_modes_with_sharp_samples(tmp_path):
    """The default ring recipe, stopped at 4,500 of its 15,000 steps: every mode AND high quality (the full
    recipe's numbers come from benchmarks/quality.py)."""
    config = recipe_config("ring", steps=4500, quiet=True, device="cpu", precision="fp32", out=str(tmp_path / "r"))
    run = train(config)
    evals = [json.loads(line)["eval"] for line in (run / "metrics.jsonl").read_text().splitlines()
             if "eval" in line]
    assert evals[-1]["modes_captured"] == 8
    assert evals[-1]["high_quality"] >= 0.9
    assert evals[-1]["reverse_kl"] < 0.05


def _torchrun(tmp_path, out, nproc):
    ganforge = str(Path(sys.executable).parent / "ganforge")
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "--no-python", ganforge, "train", "--data", "ring", "--model", "mlp", "--width", "32", "--steps", "20",
            "--batch-size", "64", "--checkpoint-every", "20", "--quiet", "--device", "cpu", "--precision", "fp32",
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
