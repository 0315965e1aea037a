"""`ganforge <command>`: a thin dispatcher that imports a stage only when its command is chosen."""

from __future__ import annotations

import importlib
import os
import sys

from ganforge import __version__
from ganforge.errors import UserError

# command -> (module whose main(argv) runs it, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("ganforge.train.cli", "train a generator and discriminator"),
    "export": ("ganforge.export.cli", "export a generator to ONNX (fp32/fp16/int8) or AOTInductor"),
    "build-engine": ("ganforge.export.engine_cli", "build a TensorRT engine from an exported ONNX"),
    "triton-server": ("ganforge.export.triton_cli", "run a Triton model repository on the pip-installed Triton server"),
    "backends": ("ganforge.serve.runtime.cli", "list inference backends and whether they can run here"),
    "sample": ("ganforge.serve.sampling.cli", "sample images for seeds into PNG files or npz shards"),
    "serve": ("ganforge.serve.http.cli", "serve a generator over HTTP (KServe v2) with dynamic batching"),
    "bench": ("ganforge.benchmarks.bench.cli", "benchmark backends: throughput, latency, server load"),
    "eval": ("ganforge.serve.evaluation.cli", "measure a generator's quality: FD, KID, precision/recall, modes"),
}

USAGE = f"""usage: ganforge <command> [options]   (ganforge {__version__})

commands:
{chr(10).join(f"  {name:<13} {text}" for name, (_, text) in COMMANDS.items())}

example:
  ganforge train --data digits --model dcgan --resolution 32 --steps 300
  ganforge <command> --help     options and an example for one command

add --debug to any command for a full traceback on errors.
"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv[0] == "--version":
        print(__version__)
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"ganforge: error: unknown command {command!r} (choose from {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(COMMANDS[command][0])
        return int(module.main(rest) or 0)
    except UserError as error:
        if debug:
            raise
        print(f"ganforge {command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ganforge backends | head`: the reader left; the rest of the output goes nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the flush at exit does not fail too
        return 141  # as a process killed by SIGPIPE reports itself to the shell
    except OSError as error:
        if debug or error.filename is None:  # not about a path the user gave: a real bug, show it
            raise
        where = error.filename if error.filename2 is None else f"{error.filename} -> {error.filename2}"
        print(f"ganforge {command}: error: cannot use {where}: {error.strerror}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ganforge {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
