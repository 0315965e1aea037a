"""--tensorboard: the run's records and sample grids in event files that TensorBoard's own reader reads back."""

from pathlib import Path

import pytest

from ganforge.train.loop import resume, train
from ganforge.train.tensorboard import TensorBoardLog


def _events(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_scalars_and_sample_grids_are_in_tensorboard_and_a_resume_rewrites_what_the_crash_left(tiny):
    run = train(tiny(steps=4, log_every=1, sample_every=2, checkpoint_every=4, tensorboard=True))
    crashed = TensorBoardLog(run)  # a run killed after step 4 had already logged step 5
    crashed.record({"step": 5, "loss_d": 123.0})
    crashed.close()
    resume(run, steps=6)
    events = _events(run)
    assert {"train/loss_d", "train/loss_g", "train/images_per_second"} <= set(events.Tags()["scalars"])
    losses = events.Scalars("train/loss_d")
    assert [e.step for e in losses] == [1, 2, 3, 4, 5, 6] and 123.0 not in [e.value for e in losses]
    assert [e.step for e in events.Images("samples")] == [2, 4, 6]
    assert not (train(tiny(steps=2, out=str(run.parent / "plain"))) / "tensorboard").exists()  # off by default


def test_evaluations_are_scalars_too(tiny, tmp_path):
    log = TensorBoardLog(tmp_path)
    log.record({"step": 10, "eval": {"fd": 1.5, "n": 100, "modes": None}, "clusters": {"k": 4}})
    log.close()
    events = _events(tmp_path)
    assert [(e.step, e.value) for e in events.Scalars("eval/fd")] == [(10, 1.5)]


def test_without_the_package_the_flag_is_one_clear_error(tiny, monkeypatch):
    import builtins

    from ganforge.errors import UserError

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    config = tiny(steps=1, tensorboard=True)
    with pytest.raises(UserError, match="pip install 'ganforge\\[tensorboard\\]'"):
        train(config)
    assert not Path(config.out).exists()  # refused before the run folder was made

