"""Every CLI mistake is one line `ganforge <command>: error: ...` and exit 2; every --help example parses, and
every option has help text."""

import argparse
import importlib

import pytest

from ganforge import cli
from ganforge.benchmarks.help_examples import example_lines, ganforge_argv
from ganforge.cliutil import Parser


def run(argv, capsys):
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.err


MISTAKES = [  # (argv, part of the message); {run} is a trained run folder, {file} an ordinary file
    (["nosuch"], "unknown command"),
    (["train", "--data", "nosuch"], "nosuch"),
    (["train", "--steps", "0"], "--steps must be at least 1"),
    (["train", "--lr-schedule", "cosine"], "invalid choice"),
    (["train", "--data", "ring", "--steps", "1", "--out", "{file}/run"], "Not a directory"),
    (["train", "--resume", "{missing}"], "not a run folder"),
    (["train", "--resume", "{run}", "--lr-g", "1"], "cannot change when resuming"),
    (["export", "{missing}", "--out", "g.onnx"], "no such file"),
    (["export", "{run}", "--out", "g.onnx", "--precision", "fp8"], "invalid choice"),
    (["sample", "{run}", "--seeds", "abc", "--out", "s"], "bad seed list"),
    (["sample", "{run}", "--out", "s"], "either --seeds or --count"),
    (["sample", "{run}", "--count", "2", "--out", "{file}/s"], "Not a directory"),
    (["sample", "{run}", "--count", "2", "--out", "s", "--checkpoint", "best"], "no checkpoint best.pt"),
    (["sample", "{run}", "--count", "2", "--out", "s", "--class", "3"], "no classes to choose"),
    (["sample", "{run}", "--count", "2", "--out", "s", "--class", "seven"], "class numbers"),
    (["sample", "{run}", "--count", "2", "--out", "s", "--truncation", "1.5"], "truncation psi must be in (0, 1]"),
    (["serve", "{run}", "--port", "99999"], "--port must be in 0..65535"),
    (["serve", "{missing}", "--port", "0"], "no such file"),
    (["serve", "{run}", "--port", "0", "--workers", "999"], "exceeds this machine's"),
    (["serve", "{run}", "--port", "0", "--threads", "0"], "--threads must be at least 1"),
    (["serve", "{run}", "--port", "0", "--threads", "999"], "--threads 999 x --workers 1 exceeds this machine's"),
    (["serve", "{run}", "--port", "0", "--min-psnr", "5"], "--min-psnr must be between"),
    (["serve", "{run}", "--port", "0", "--batch-gap-us", "-1"], "--batch-gap-us non-negative"),
    (["sample", "{run}", "--count", "2", "--out", "s", "--min-psnr", "500"], "--min-psnr must be between"),
    (["export", "{run}", "--out", "g.onnx", "--instances", "2"], "apply to --format triton only"),
    (["backends", "{missing}"], "no such file"),
    (["bench", "{run}", "--out", "b", "--precisions", "fp8"], "unknown precision fp8"),
    (["bench", "{run}"], "required: --out"),
    (["eval", "{run}", "--n", "1"], "--n"),
    (["eval", "{missing}"], "no such"),
    (["build-engine", "{missing}", "--out", "g.engine"], ""),
]


@pytest.mark.parametrize("argv, message", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_cli_mistakes_are_one_line_and_exit_2(argv, message, trained_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("not a folder")
    values = {"run": str(trained_run), "file": str(tmp_path / "file"), "missing": str(tmp_path / "missing")}
    code, err = run([part.format(**values) for part in argv], capsys)
    command = argv[0] if argv[0] in cli.COMMANDS else None
    assert code == 2
    assert err.startswith(f"ganforge {command}: error: " if command else "ganforge: error: "), err
    assert message in err and len(err.strip().splitlines()) == 1, err


class Parsed(Exception):
    pass


def examples():
    """(command, ganforge arguments) of every example in every --help (torchrun's included, curl's left out)."""
    for name, line in example_lines():
        if (argv := ganforge_argv(line)) is not None:
            yield name, argv


@pytest.mark.parametrize("command, argv", list(examples()), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_every_help_example_parses_as_printed(command, argv, monkeypatch):
    """Each example's flags are accepted by its command's parser. Running them all takes ~17 minutes (training,
    compiles, a 200,000-image sample): benchmarks/help_examples.py does that, results in benchmarks/results/."""
    assert argv[0] == command

    def stop(self, args=None, namespace=None):
        argparse.ArgumentParser.parse_args(self, args, namespace)
        raise Parsed

    monkeypatch.setattr(Parser, "parse_args", stop)
    with pytest.raises(Parsed):
        importlib.import_module(cli.COMMANDS[command][0]).main(argv[1:])


@pytest.mark.parametrize("command", sorted(cli.COMMANDS))
def test_every_option_has_help_text(command, monkeypatch):
    """Defaults that a recipe decides are said as the recipe's (checked by reading, not here)."""
    parsers = []

    def capture(self, args=None, namespace=None):
        parsers.append(self)
        raise Parsed

    monkeypatch.setattr(Parser, "parse_args", capture)
    with pytest.raises(Parsed):
        importlib.import_module(cli.COMMANDS[command][0]).main([])
    undocumented = [action.option_strings[0] if action.option_strings else action.dest
                    for action in parsers[0]._actions if not (action.help or "").strip()]
    assert not undocumented, f"ganforge {command}: options without help text: {undocumented}"


def test_output_into_a_closed_pipe_ends_quietly(ganforge_cli):
    """`ganforge backends | head -1`: the reader is gone before the writer is done; no BrokenPipeError traceback."""
    import os
    import subprocess

    read, write = os.pipe()
    os.close(read)  # every write now fails with EPIPE, as after `head` has exited
    result = subprocess.run([ganforge_cli, "backends"], stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert result.returncode == 141
    assert result.stderr == ""
