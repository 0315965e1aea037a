import dataclasses
import json

import pytest
import torch

from ganforge.train.checkpoint import load_checkpoint
from ganforge.train.loop import resume, train


def assert_identical(a, b, where="checkpoint"):
    """Every tensor bitwise equal and every plain value equal, recursively."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("schedule, augment, classes", [
    ("constant", "", {}), ("linear", "color,translation,cutout", {"ada_target": 0.6}),
    ("linear", "translation", {"labels": "ignore", "self_conditional": 6}),  # pseudo-classes, checkpointed too
    # found again on D's features at steps 50, 100 (right at the checkpoint resumed from) and 150
    ("constant", "", {"labels": "ignore", "self_conditional": 6, "recluster_every": 50}),
    ("constant", "", {"data": "stacked-digits", "labels": "ignore", "self_conditional": 6, "cluster_channels": True}),
    # the residual model's step costs about 4x the tiny DCGAN's: 40 steps, resumed from step 20
    ("linear", "translation", {"model": "residual", "loss": "rpgan", "r1": 0.1, "r2": 0.1, "conditional": True,
                               "steps": 40, "checkpoint_every": 20, "sample_every": 20, "log_every": 10})])
def test_resumed_run_equals_uninterrupted_run_bitwise(tiny, tmp_path, schedule, augment, classes):
    common = dict(steps=200, checkpoint_every=100, sample_every=100, log_every=50, lr_schedule=schedule,
                  augment=augment) | classes
    end, middle = f"step-{common['steps']:06d}.pt", f"step-{common['checkpoint_every']:06d}.pt"
    straight = train(tiny(**common, out=str(tmp_path / "straight")))
    halves = train(tiny(**common, out=str(tmp_path / "halves")))
    for late in (end, "latest.pt"):  # as if killed right after the middle checkpoint
        (halves / "checkpoints" / late).unlink()
    (halves / "checkpoints" / "latest.pt").hardlink_to(halves / "checkpoints" / middle)
    resume(halves)
    a = straight / "checkpoints" / end
    b = halves / "checkpoints" / end
    state_a, state_b = load_checkpoint(a), load_checkpoint(b)
    assert state_a["train_config"].pop("out") != state_b["train_config"].pop("out")  # the only difference
    # weights, EMA, both optimizers, scalers, every RNG state, the data position, the step, the config
    assert_identical(state_a, state_b)
    steps = [json.loads(line)["step"] for line in (halves / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == common["steps"] and len(steps) == len(set(steps))


def test_resume_raises_total_and_keeps_last_k(tiny):
    run = train(tiny(steps=4, checkpoint_every=1, keep_checkpoints=2))
    resume(run, steps=6)
    names = sorted(p.name for p in (run / "checkpoints").glob("step-*.pt"))
    assert names == ["step-000005.pt", "step-000006.pt"]
    assert load_checkpoint(run)["step"] == 6
    config = dataclasses.asdict(tiny())
    assert load_checkpoint(run)["train_config"]["width"] == config["width"]


def test_run_folder_contents(tiny):
    run = train(tiny(steps=4))
    assert (run / "config.json").is_file() and (run / "loss.png").is_file()
    assert (run / "samples" / "step-000004.png").is_file()
    state = load_checkpoint(run)
    assert state["generator_config"]["kind"] == "dcgan" and state["step"] == 4
    assert set(state) >= {"generator", "generator_ema", "discriminator", "optimizer_g", "optimizer_d",
                          "scaler_g", "scaler_d", "rng", "data", "skipped_steps"}


def test_resume_clears_temp_files_and_a_torn_metrics_line(tiny):
    run = train(tiny(steps=4))
    stale = [run / "checkpoints" / ".step-000006.pt.tmp-00112233445566ff", run / ".config.json.tmp-0123456789abcdef"]
    for path in stale:
        path.write_bytes(b"left by a SIGKILL")
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 5, "loss_d"')  # a kill in the middle of an append
    resume(run, steps=6)
    assert not any(path.exists() for path in stale)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]
