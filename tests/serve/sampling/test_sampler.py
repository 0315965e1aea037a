import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ganforge.errors import UserError
from ganforge.images import nchw_to_nhwc, to_uint8
from ganforge.latents import latents_for_seeds
from ganforge.serve.runtime.runners import open_runner
from ganforge.serve.sampling.sampler import SampleConfig, sample


def _shards(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob("shard-*.npz"))}


def test_npz_shards_hold_seeds_and_nhwc_uint8_images(onnx_model, tmp_path):
    manifest = sample(SampleConfig(model=onnx_model, backend="onnxruntime",
                                   out=str(tmp_path / "s"), seeds=tuple(range(10, 35)),
                                   shard_size=10, quiet=True))
    body = json.loads(manifest.read_text())
    assert body["complete"] and [s["count"] for s in body["shards"]] == [10, 10, 5]
    with np.load(tmp_path / "s" / "shard-00001.npz") as shard:
        assert shard["seeds"].dtype == np.int64 and shard["seeds"].tolist() == list(range(20, 30))
        assert shard["images"].dtype == np.uint8 and shard["images"].shape == (10, 16, 16, 1)
        with open_runner("onnxruntime", onnx_model) as runner:
            expected = nchw_to_nhwc(to_uint8(runner.infer(latents_for_seeds(range(20, 30), 8))))
        assert np.array_equal(shard["images"], expected)


def test_output_is_identical_for_any_batch_size_and_workers(onnx_model, tmp_path):
    runs = []
    for i, (batch, workers) in enumerate([(1, 1), (7, 3), (64, 2)]):
        out = tmp_path / f"s{i}"
        sample(SampleConfig(model=onnx_model, backend="onnxruntime",
                            out=str(out), seeds=tuple(range(40)), shard_size=16,
                            batch_size=batch, workers=workers, quiet=True))
        runs.append((_shards(out), json.loads((out / "manifest.json").read_text())))
    assert runs[0] == runs[1] == runs[2]


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
def test_the_helper_thread_runs_at_idle_priority_and_inference_does_not(onnx_model, tmp_path, monkeypatch):
    """The helper (latents, uint8 rows, the shard's sums) takes only what inference leaves of the cores."""
    from ganforge.serve.runtime.latent_space import LatentSpace

    policies, latents = [], LatentSpace.latents

    def recording(self, seeds, controls=None):
        policies.append(os.sched_getscheduler(0))
        return latents(self, seeds, controls)

    monkeypatch.setattr(LatentSpace, "latents", recording)
    sample(SampleConfig(model=onnx_model, backend="onnxruntime", out=str(tmp_path / "s"), seeds=tuple(range(40)),
                        batch_size=8, quiet=True))
    assert policies and set(policies) == {os.SCHED_IDLE} and os.sched_getscheduler(0) != os.SCHED_IDLE


def test_openvino_samples_two_batches_at_a_time_into_the_bytes_of_one_runner(onnx_model, tmp_path):
    """OpenVINO keeps two batches in flight (two streams of one compiled model, as bench's offline row): the shards
    hold, in seed order, exactly the images one runner computes batch after batch, whatever the batch size and
    however many batches are in flight."""
    from ganforge.serve.runtime.runners.base import offline_in_flight

    seeds = tuple(range(100, 157))
    with open_runner("openvino", onnx_model) as runner:
        assert offline_in_flight(runner) == 2
        expected = nchw_to_nhwc(to_uint8(np.concatenate([runner.infer(latents_for_seeds(seeds[i : i + 5], 8))
                                                         for i in range(0, len(seeds), 5)])))
    for batch, in_flight in ((5, None), (4, 1), (4, 3)):
        out = tmp_path / f"b{batch}-{in_flight}"
        sample(SampleConfig(model=onnx_model, backend="openvino", out=str(out), seeds=seeds, shard_size=20,
                            batch_size=batch, quiet=True, in_flight=in_flight))
        images, written = [], []
        for name in sorted(_shards(out)):
            with np.load(out / name) as shard:
                images.append(shard["images"])
                written.extend(shard["seeds"].tolist())
        assert written == list(seeds)
        assert np.array_equal(np.concatenate(images), expected)
    with pytest.raises(UserError, match="--in-flight must be at least 1"):
        SampleConfig(model=onnx_model, out=str(tmp_path / "x"), seeds=seeds, in_flight=0)


def test_batches_in_flight_come_back_in_order_and_no_runner_runs_two_at_once():
    """The first runner is slow and the second fast, so batches finish out of order: they are still yielded in
    order, and a runner never gets a batch before its last one is done."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from ganforge.serve.sampling.sampler import _computed

    busy, overlaps = [threading.Lock(), threading.Lock()], []

    def runner(index: int, delay: float):
        def infer(z: np.ndarray) -> np.ndarray:
            if not busy[index].acquire(blocking=False):
                overlaps.append(index)
                busy[index].acquire()
            time.sleep(delay)
            busy[index].release()
            return z * 2
        return infer

    batches = list(range(9))
    with ThreadPoolExecutor(1) as helper:
        make = lambda k: helper.submit(np.full, 2, float(k)) if k < len(batches) else None  # noqa: E731
        got = list(_computed(batches, make, [runner(0, 0.03), runner(1, 0.0)]))
    assert [b for b, _, _ in got] == batches and not overlaps
    assert all(np.array_equal(out, z * 2) and z[0] == b for b, z, out in got)


@pytest.mark.parametrize("fmt", ["npz", "png"])
def test_images_converted_by_the_runner_are_the_same_shards(trained_run, tmp_path, monkeypatch, fmt):
    """On a GPU the sampler takes uint8 images from the runner (converted on the device); forced here on the CPU,
    the shards and their manifest must be the bytes of the usual path."""
    import ganforge.serve.sampling.sampler as sampler

    def run(out: str) -> tuple[dict, list]:
        sample(SampleConfig(model=str(trained_run), backend="torch", out=str(tmp_path / out), seeds=tuple(range(30)),
                            shard_size=16, batch_size=7, format=fmt, quiet=True))
        files = {p.relative_to(tmp_path / out): p.read_bytes() for p in sorted((tmp_path / out).rglob("shard-*"))
                 if p.is_file()}
        return files, json.loads((tmp_path / out / "manifest.json").read_text())["shards"]

    usual = run("host")
    used = []

    def on_device(runner):
        used.append(runner.info.backend)
        return runner.infer_uint8

    monkeypatch.setattr(sampler, "device_uint8", on_device)
    assert run("device") == usual and used == ["torch"]


def test_png_format_writes_one_file_per_seed(onnx_model, tmp_path):
    sample(SampleConfig(model=onnx_model, backend="onnxruntime",
                        out=str(tmp_path / "p"), seeds=(3, 4, 5), format="png", quiet=True))
    files = sorted(p.name for p in (tmp_path / "p" / "shard-00000").iterdir())
    assert files == ["seed0000000003.png", "seed0000000004.png", "seed0000000005.png"]


def test_existing_output_needs_resume(onnx_model, tmp_path):
    config = SampleConfig(model=onnx_model, backend="onnxruntime", out=str(tmp_path / "s"), seeds=(1, 2), quiet=True)
    sample(config)
    with pytest.raises(UserError, match="--resume"):
        sample(config)


@pytest.mark.slow
def test_killed_sampling_run_resumes_to_the_same_manifest(onnx_model, tmp_path, ganforge_cli):
    args = ["sample", onnx_model, "--backend", "onnxruntime",
            "--seeds", "0-5999", "--shard-size", "200", "--batch-size", "16", "--quiet"]
    clean = tmp_path / "clean"
    assert subprocess.run([ganforge_cli, *args, "--out", str(clean)], capture_output=True).returncode == 0

    crashed = tmp_path / "crashed"
    child = subprocess.Popen([ganforge_cli, *args, "--out", str(crashed)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        manifest = crashed / "manifest.json"
        if manifest.exists() and len(json.loads(manifest.read_text())["shards"]) >= 3:
            break
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    partial = json.loads((crashed / "manifest.json").read_text())
    assert not partial["complete"] and len(partial["shards"]) < 30

    result = subprocess.run([ganforge_cli, *args, "--out", str(crashed), "--resume"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (crashed / "manifest.json").read_text() == (clean / "manifest.json").read_text()
    assert _shards(crashed) == _shards(clean)


@pytest.mark.slow
def test_torchrun_splits_shards_across_processes(onnx_model, tmp_path, ganforge_cli):
    single = tmp_path / "single"
    sample(SampleConfig(model=onnx_model, backend="onnxruntime",
                        out=str(single), seeds=tuple(range(50)), shard_size=10, quiet=True))
    args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", "--no-python",
            ganforge_cli, "sample", onnx_model, "--backend", "onnxruntime",
            "--seeds", "0-49", "--shard-size", "10", "--quiet",
            "--out", str(tmp_path / "multi")]
    result = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "multi" / "manifest.json").read_text() == (single / "manifest.json").read_text()
    assert _shards(tmp_path / "multi") == _shards(single)
    assert not list((tmp_path / "multi").glob("manifest-rank*.json"))


def test_resume_refuses_a_folder_sampled_for_other_seeds(onnx_model, tmp_path):
    out = str(tmp_path / "s")
    sample(SampleConfig(model=onnx_model, backend="onnxruntime",
                        out=out, seeds=tuple(range(20)), shard_size=10, quiet=True))
    for seeds in (range(100, 120), range(5)):  # same count other seeds; fewer seeds
        with pytest.raises(UserError, match="seeds"):
            sample(SampleConfig(model=onnx_model, backend="onnxruntime",
                                out=out, seeds=tuple(seeds), shard_size=10, resume=True,
                                quiet=True))


def _tamper(folder, change):
    manifest = folder / "manifest.json"
    body = json.loads(manifest.read_text())
    change(body)
    manifest.write_text(json.dumps(body))


@pytest.mark.parametrize("name", ["../outside.npz", "/tmp/x.npz", "shard-00001.npz"])
def test_resume_refuses_shard_names_that_are_not_this_runs_own(onnx_model, tmp_path, name):
    out = tmp_path / "s"
    config = SampleConfig(model=onnx_model, backend="onnxruntime",
                          out=str(out), seeds=tuple(range(20)), shard_size=10, quiet=True)
    sample(config)
    _tamper(out, lambda body: body["shards"][0].update(file=name))
    with pytest.raises(UserError, match="shard 0 entry does not match"):
        sample(dataclasses.replace(config, resume=True))


def test_resume_with_a_corrupt_manifest_is_one_clear_error(onnx_model, tmp_path):
    out = tmp_path / "s"
    config = SampleConfig(model=onnx_model, backend="onnxruntime", out=str(out), seeds=(1, 2), quiet=True)
    sample(config)
    (out / "manifest.json").write_text('{"shards": [')
    with pytest.raises(UserError, match="unreadable manifest"):
        sample(dataclasses.replace(config, resume=True))


def test_resume_removes_temp_files_a_kill_left_and_redoes_a_torn_shard(onnx_model, tmp_path):
    out = tmp_path / "s"
    config = SampleConfig(model=onnx_model, backend="onnxruntime",
                          out=str(out), seeds=tuple(range(20)), shard_size=10, quiet=True)
    sample(config)
    clean = _shards(out)
    stale = out / ".shard-00001.npz.tmp-0123456789abcdef"
    stale.write_bytes(b"half a shard")
    (out / "shard-00001.npz").write_bytes(b"flipped")
    sample(dataclasses.replace(config, resume=True))
    assert not stale.exists() and _shards(out) == clean


def test_ctrl_c_mid_shard_leaves_finished_shards_and_no_partial_file(onnx_model, tmp_path, monkeypatch):
    """Shards are streamed to a temp file batch by batch: an interrupt in the middle of one drops that file, and
    what was finished stays listed with the sha256 of its bytes."""
    import hashlib

    from ganforge.serve.sampling import sampler

    opened = sampler.open_runner

    class Interrupted:
        def __init__(self, runner):
            self.runner, self.info, self.calls = runner, runner.info, 0

        def infer(self, z):
            self.calls += 1
            if self.calls == 5:  # shard 1's second batch: its file is open, one batch in
                raise KeyboardInterrupt
            return self.runner.infer(z)

    class Opener:
        def __init__(self, *args):
            self.context = opened(*args)

        def __enter__(self):
            return Interrupted(self.context.__enter__())

        def __exit__(self, *exc):
            return self.context.__exit__(*exc)

    monkeypatch.setattr(sampler, "open_runner", Opener)
    out = tmp_path / "s"
    with pytest.raises(KeyboardInterrupt):
        sample(SampleConfig(model=onnx_model, backend="onnxruntime", out=str(out), seeds=tuple(range(30)),
                            shard_size=9, batch_size=3, quiet=True))
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "shard-00000.npz"]
    (entry,) = json.loads((out / "manifest.json").read_text())["shards"]
    assert entry["sha256"] == hashlib.sha256((out / "shard-00000.npz").read_bytes()).hexdigest()
    with np.load(out / "shard-00000.npz") as shard:
        assert shard["seeds"].tolist() == list(range(9)) and shard["images"].shape == (9, 16, 16, 1)


def test_points_model_samples_coordinates(tmp_path):
    from ganforge.train.config import TrainConfig
    from ganforge.train.loop import train

    run = train(TrainConfig(data="ring", model="mlp", steps=2, batch_size=16, eval_every=0, quiet=True,
                            precision="fp32", device="cpu", out=str(tmp_path / "ring")))
    manifest = sample(SampleConfig(model=str(run), backend="torch", out=str(tmp_path / "s"), seeds=tuple(range(5)),
                                   quiet=True))
    assert "points" in json.loads(manifest.read_text())["layout"]
    with np.load(tmp_path / "s" / "shard-00000.npz") as shard:
        assert shard["points"].shape == (5, 2) and shard["points"].dtype == np.float32
    with pytest.raises(UserError, match="--format npz"):
        sample(SampleConfig(model=str(run), backend="torch", out=str(tmp_path / "p"), seeds=(1,), format="png",
                            quiet=True))


def test_a_bare_checkpoint_is_exported_into_out_not_beside_it(trained_run, tmp_path):
    import shutil

    (tmp_path / "models").mkdir()
    checkpoint = tmp_path / "models" / "g.pt"
    shutil.copy(trained_run / "checkpoints" / "latest.pt", checkpoint)
    sample(SampleConfig(model=str(checkpoint), backend="onnxruntime", out=str(tmp_path / "s"), seeds=(1, 2),
                        quiet=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models", "s"]
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["g.pt"]
    assert (tmp_path / "s" / "exports" / "generator-fp32.onnx").is_file()


def test_the_sample_walk_resolves_the_model_once(trained_run, tmp_path, monkeypatch):
    """From a run folder to its shards the model is resolved once, and the run folder's layout looked up once: the
    export made on demand, the runner and the manifest all take the resolved model."""
    import ganforge.export.model_source as model_source
    import ganforge.train.checkpoint as checkpoint

    lookups, made = [], []
    real_find, real_init = checkpoint.find_checkpoint, model_source.ModelSource.__init__

    def counting_find(path, name=None):
        if Path(path).is_dir():
            lookups.append(path)
        return real_find(path, name)

    def counting_init(self, *args, **kwargs):
        made.append(args[0] if args else kwargs["given"])
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "find_checkpoint", counting_find)
    monkeypatch.setattr(model_source, "find_checkpoint", counting_find)
    monkeypatch.setattr(model_source.ModelSource, "__init__", counting_init)
    for backend in ("torch", "onnxruntime"):
        sample(SampleConfig(model=trained_run, backend=backend, out=str(tmp_path / backend), seeds=(0, 1, 2),
                            quiet=True))
    assert lookups == [trained_run] * 2 and made == [Path(trained_run)] * 2  # once per sample() call


def test_a_chosen_class_and_truncation_give_that_class_on_every_backend(conditional_run, tmp_path):
    """Seed + class + psi: the images the runner makes for the controlled latents, with the class G reads being
    the one asked for, whichever backend runs it; psi = 1 without a class writes today's shards, byte for byte."""
    import torch

    from ganforge.serve.runtime.latent_space import LatentSpace
    from ganforge.train.checkpoint import load_generator

    seeds, generator = tuple(range(40)), load_generator(conditional_run)[0]
    for backend in ("torch", "onnxruntime"):
        manifest = sample(SampleConfig(model=conditional_run, backend=backend, out=str(tmp_path / backend),
                                       seeds=seeds, quiet=True, truncation=0.6, classes=(7,)))
        header = json.loads(manifest.read_text())
        assert (header["truncation"], header["classes"]) == (0.6, [7])
        with open_runner(backend, header["model"]) as runner, np.load(tmp_path / backend / "shard-00000.npz") as shard:
            space = LatentSpace.of(runner.info)
            z = space.latents(seeds, space.controls(0.6, (7,)))
            assert np.array_equal(shard["images"], nchw_to_nhwc(to_uint8(runner.infer(z))))
            assert (generator.classes.labels(torch.from_numpy(z)) == 7).all()
    plain = sample(SampleConfig(model=conditional_run, backend="torch", out=str(tmp_path / "plain"), seeds=seeds,
                                quiet=True))
    sample(SampleConfig(model=conditional_run, backend="torch", out=str(tmp_path / "ones"), seeds=seeds, quiet=True,
                        truncation=1.0))
    assert "truncation" not in json.loads(plain.read_text())
    assert _shards(tmp_path / "plain") == _shards(tmp_path / "ones")


def test_a_residual_model_samples_the_same_images_on_every_cpu_backend(residual_run, tmp_path):
    """The residual family keeps the generator-file contract: each backend's shards are its runner's images for the
    seeds and the class asked for, and the backends agree to within one grey level."""
    import torch

    from ganforge.serve.runtime.latent_space import LatentSpace
    from ganforge.train.checkpoint import load_generator

    seeds, generator = tuple(range(24)), load_generator(residual_run)[0]
    images = {}
    for backend in ("torch", "onnxruntime", "openvino"):
        manifest = sample(SampleConfig(model=residual_run, backend=backend, precision="fp32",
                                       out=str(tmp_path / backend), seeds=seeds, quiet=True, classes=(3,)))
        with open_runner(backend, json.loads(manifest.read_text())["model"]) as runner, \
                np.load(tmp_path / backend / "shard-00000.npz") as shard:
            space = LatentSpace.of(runner.info)
            z = space.latents(seeds, space.controls(1.0, (3,)))
            assert np.array_equal(shard["images"], nchw_to_nhwc(to_uint8(runner.infer(z))))
            assert (generator.classes.labels(torch.from_numpy(z)) == 3).all()
            images[backend] = shard["images"].astype(int)
    for backend in ("onnxruntime", "openvino"):
        assert np.abs(images[backend] - images["torch"]).max() <= 1


def test_resuming_with_other_controls_is_refused_and_classes_are_checked_first(conditional_run, tmp_path):
    out = str(tmp_path / "s")
    sample(SampleConfig(model=conditional_run, backend="torch", out=out, seeds=(1, 2), quiet=True, truncation=0.5))
    with pytest.raises(UserError, match="truncation"):
        sample(SampleConfig(model=conditional_run, backend="torch", out=out, seeds=(1, 2), quiet=True, resume=True))
    with pytest.raises(UserError, match="out of range: this model has classes 0..9"):
        sample(SampleConfig(model=conditional_run, backend="torch", out=str(tmp_path / "t"), seeds=(1,), quiet=True,
                            classes=(10,)))
    assert not (tmp_path / "t").exists()  # refused before anything was written
