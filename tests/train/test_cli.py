"""The command line: bad input is one clear line and a non-zero exit; nothing is overwritten."""

import json
import os
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganforge.cli import main
from ganforge.errors import UserError
from ganforge.train.config import TrainConfig


def run_cli(capsys, *args):
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_shows_runnable_examples(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    assert "ganforge train --data digits" in capsys.readouterr().out


def test_help_states_the_defaults_a_run_takes_from_its_recipe():
    from ganforge.train.cli import build_parser
    from ganforge.train.recipes import recipe_config

    helps = {action.dest: action.help for action in build_parser()._actions}
    for field in ("steps", "width", "lr_g", "batch_size", "z_dim"):
        for data in ("digits", "ring"):  # what `--help` says a run of each data gets is what it gets
            assert f"{data} {getattr(recipe_config(data), field)}," in helps[field] + ",", (field, data)
    assert "1000" not in helps["steps"]  # the dataclass' fallback, which no --data run uses


@pytest.mark.parametrize("args, message", [
    (["--data", "imagenet"], "unknown --data"),
    (["--resolution", "48"], "unsupported --resolution 48"),
    (["--batch-size", "10", "--pack", "4"], "multiple of --pack"),
    (["--steps", "0"], "--steps must be at least 1"),
    (["--data", "ring", "--model", "dcgan"], "use --model mlp"),
    (["--precision", "fp8"], "invalid choice"),
    (["--data", "folder:/nonexistent/folder", "--steps", "1"], "not a directory"),
    (["--model", "residual", "--resolution", "2048"], "unsupported --resolution 2048 for residual"),
    (["--model", "residual", "--spectral-norm"], "--spectral-norm is for the dcgan and mlp"),
    (["--full-size-blocks", "0"], "--full-size-blocks is for --model residual"),
    (["--batch-norm-g"], "--batch-norm-g is for --model residual"),
    (["--batch-norm-d"], "--batch-norm-d is for --model residual"),
    (["--model", "residual", "--batch-norm-d", "--r1", "0.1"], "breaks the per-sample gradient penalties"),
    (["--model", "residual", "--full-size-blocks", "-1"], "--full-size-blocks is for --model residual"),
    (["--fit", "stretch"], "invalid choice"),
    (["--fit", "pad", "--steps", "1"], "not a folder"),
    (["--data", "ring", "--mirror"], "--mirror flips images"),
    (["--data", "stacked-digits", "--mirror", "--steps", "1"], "has none"),
    (["--freeze-d", "-1"], "--freeze-d must be 0"),
    (["--freeze-d", "9", "--steps", "1"], "--freeze-d 9"),
    (["--ada-target", "0.6", "--augment", ""], "--ada-target"),
    (["--ada-target", "1.5"], "--ada-target"),
    (["--r2", "-1"], "non-negative"),
    (["--init-from", "/nonexistent/run", "--steps", "1"], "/nonexistent/run"),
])
def test_bad_flags_fail_with_one_line(capsys, tmp_path, args, message):
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "r"), *args)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_resume_without_checkpoint_and_with_changed_flags(capsys, tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"data": "digits"}))
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path))
    assert code == 2 and "no checkpoint found" in err
    code, _, err = run_cli(capsys, "train", "--resume", str(tmp_path), "--lr-g", "1")
    assert code == 2 and "--lr-g cannot change when resuming" in err


def test_refuses_to_overwrite_an_existing_run(capsys, trained_run):
    before = (trained_run / "checkpoints" / "latest.pt").read_bytes()
    code, _, err = run_cli(capsys, "train", "--out", str(trained_run), "--steps", "1", "--quiet")
    assert code == 2 and "already holds a run" in err
    assert (trained_run / "checkpoints" / "latest.pt").read_bytes() == before


def test_corrupt_checkpoint_through_the_real_command(tmp_path, trained_run, ganforge_cli):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text((trained_run / "config.json").read_text())
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "latest.pt").write_bytes(b"PK\x03\x04garbage")
    result = subprocess.run([ganforge_cli, "train", "--resume", str(run)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "truncated or corrupt" in result.stderr


def test_default_run_folder_is_numbered(tmp_path, ganforge_cli):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [ganforge_cli, "train", "--data", "digits", "--resolution", "16", "--width", "8", "--steps", "2",
            "--batch-size", "8", "--eval-every", "0", "--quiet"]  # no evaluation: its classifier takes ~20 s a run
    for _ in range(2):
        result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, env=env)
        assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["00000-digits-dcgan", "00001-digits-dcgan"]
    assert "trained 2 steps" in result.stdout


int_or_junk = st.integers(-5, 10**6) | st.floats(allow_nan=True) | st.text(max_size=6) | st.none() | st.booleans()


@settings(max_examples=300, deadline=None)
@given(values=st.fixed_dictionaries({}, optional={
    "data": st.sampled_from(["ring", "grid", "digits", "shapes", "nosuch", "folder:", "npz:/nonexistent.npz"]),
    "model": st.sampled_from(["mlp", "dcgan", "gpt"]), "loss": st.sampled_from(["ns", "hinge", "wgan-gp", "x"]),
    "precision": st.sampled_from(["auto", "fp32", "bf16", "fp16", "fp8"]),
    "lr_schedule": st.sampled_from(["constant", "linear", "cosine"]),
    "self_conditional": int_or_junk, "labels": st.sampled_from(["use", "ignore", "x"]), "conditional": st.booleans(),
    "resolution": int_or_junk, "steps": int_or_junk, "batch_size": int_or_junk, "pack": int_or_junk,
    "z_dim": int_or_junk, "width": int_or_junk, "depth": int_or_junk, "eval_every": int_or_junk,
    "ema": st.floats(-1, 2) | int_or_junk, "lr_g": st.floats(-1, 1) | int_or_junk, "r1": int_or_junk,
    "betas": st.tuples(st.floats(-1, 2), st.floats(-1, 2)) | st.lists(st.floats(0, 0.99), max_size=3)}))
def test_fuzzed_train_configs_are_valid_or_one_user_error(values):
    """Any combination of flag values either makes a config or is a UserError (one line at the CLI), never a
    TypeError or a config that breaks later."""
    try:
        config = TrainConfig(**values)
    except UserError:
        return
    assert config.steps >= 1 and config.batch_size % config.pack == 0 and 0 <= config.ema < 1
