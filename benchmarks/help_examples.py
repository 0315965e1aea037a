"""Run every example of every `ganforge <command> --help` as printed, in order, in a scratch folder.

    python benchmarks/help_examples.py [--workdir DIR] [--out benchmarks/results/help_examples.json]

The examples build on each other as a user's session would: the train examples make runs/00000-digits-dcgan
and runs/00001-ring-mlp, export makes g.onnx, sample and bench use both. `ganforge serve` examples run in the
background until ready, the curl examples are sent to each, then the server gets Ctrl-C and must exit 0.
What cannot run here must fail as promised, with exit 2 and one `ganforge <command>: error:` line: TensorRT
(not installable on these machines) and the Inception weights (never downloaded). HOME is the scratch folder's
home/, with home/faces/ holding 128 PNGs for the folder example. Ports 8000 must be free.
Prints a table, writes the results JSON, exits 1 if any example did not do what it should.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ganforge.benchmarks.bench.http_server import is_ready
from ganforge.cli import COMMANDS
from ganforge.files import atomic_write_bytes

SERVERS = ("serve", "triton-server")  # run in the background until ready, sent their curl examples, then Ctrl-C
RESULTS = Path(__file__).parent / "results" / "help_examples.json"
CANNOT_RUN_HERE = {  # part of the example -> why it must fail here (with exit 2 and one error line)
    "build-engine": "needs TensorRT and an NVIDIA GPU",
    "g.engine": "needs a TensorRT engine (build-engine)",
    "--features inception": "needs the Inception weights file, never downloaded",
}


def example_lines() -> Iterator[tuple[str, str]]:
    """(command, line) for every example line of every command's --help, comments removed, in command order."""
    for name, (module, _) in COMMANDS.items():
        text = getattr(importlib.import_module(module), "EXAMPLES", "")
        for line in text.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                yield name, shlex.join(words)


def ganforge_argv(line: str) -> list[str] | None:
    """The ganforge arguments of an example (after `torchrun ... --no-python ganforge`), or None (curl)."""
    words = shlex.split(line)
    return words[words.index("ganforge") + 1:] if "ganforge" in words else None


def make_faces(folder: Path, count: int = 128) -> None:
    from PIL import Image

    from ganforge.train.data.shapes import load_shapes_source

    folder.mkdir(parents=True, exist_ok=True)
    images = load_shapes_source(64, 0, pool_size=count).stream.images  # uint8 [N, 3, 64, 64]
    for i, image in enumerate(images):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")


def run_line(line: str, env: dict, cwd: Path, timeout: float) -> dict:
    started = time.monotonic()
    try:
        done = subprocess.run(shlex.split(line), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        code, out, err = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        code, out, err = "timeout", "", (expired.stderr or b"").decode(errors="replace")
    return {"exit": code, "seconds": round(time.monotonic() - started, 1), "stdout": out.strip().splitlines(),
            "stderr": err.strip().splitlines()}


def run_server(line: str, curls: list[str], env: dict, cwd: Path, timeout: float) -> dict:
    """Start a serve example, wait until ready, send the curl examples, Ctrl-C it: exit 0 and good answers."""
    argv = ganforge_argv(line)
    flag = next((f for f in ("--port", "--http-port") if f in argv), None)
    port = int(argv[argv.index(flag) + 1]) if flag else 8000
    started = time.monotonic()
    server = subprocess.Popen(shlex.split(line), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    answers = []
    try:
        while not is_ready(f"http://127.0.0.1:{port}"):
            if server.poll() is not None or time.monotonic() - started > timeout:
                break
            time.sleep(0.2)
        else:
            for curl in curls:
                answers.append(_check_curl(run_line(curl, env, cwd, 60), curl, cwd))
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)
        try:
            _, err = server.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
    good = server.returncode == 0 and len(answers) == len(curls) and all(a["ok"] for a in answers)
    return {"exit": server.returncode, "seconds": round(time.monotonic() - started, 1),
            "stderr": err.strip().splitlines(), "curl": answers, "served_ok": good}


def _check_curl(result: dict, curl: str, cwd: Path) -> dict:
    words = shlex.split(curl)
    if "-o" in words:  # the PNG example
        path = cwd / words[words.index("-o") + 1]
        ok = result["exit"] == 0 and path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:  # an infer request: the answer must be a KServe v2 response
        ok = result["exit"] == 0 and '"outputs"' in " ".join(result.get("stdout", []))
    return {"command": curl, "exit": result["exit"], "ok": ok}


def judge(command: str, line: str, result: dict) -> tuple[bool, str]:
    why = next((reason for part, reason in CANNOT_RUN_HERE.items() if part in line), None)
    if why:
        errors = [e for e in result["stderr"] if e.strip()]
        one_line = len(errors) == 1 and errors[0].startswith(f"ganforge {command}: error: ")
        return result["exit"] == 2 and one_line, f"must fail here: {why}"
    if "served_ok" in result:
        return result["served_ok"], "serves, answers the curl examples, exits 0 on Ctrl-C"
    return result["exit"] == 0, "runs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", help="scratch folder (default: a new temporary one, removed after)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per example")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(args.workdir or tmp)
        cwd.mkdir(parents=True, exist_ok=True)
        make_faces(cwd / "home" / "faces")
        env = {**os.environ, "HOME": str(cwd / "home"),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        lines = list(example_lines())
        curls = {}  # command -> its curl examples, sent to its server examples
        for command, line in lines:
            if line.startswith("curl "):
                curls.setdefault(command, []).append(line)
        rows = []
        for command, line in lines:
            if line.startswith("curl "):
                continue  # sent to each serve example
            print(f"$ {line}", flush=True)
            if command in SERVERS:
                result = run_server(line, curls.get(command, []), env, cwd, args.timeout)
            else:
                result = run_line(line, env, cwd, args.timeout)
            ok, expected = judge(command, line, result)
            rows.append({"command": line, "expected": expected, "ok": ok, "exit": result["exit"],
                         "seconds": result["seconds"], "last_error_line": (result["stderr"] or [""])[-1][:300],
                         **({"curl": result["curl"]} if "curl" in result else {})})
            print(f"  {'ok' if ok else 'FAILED'}: exit {result['exit']} in {result['seconds']} s", flush=True)
    from ganforge.benchmarks.bench.environment import environment

    results = {"environment": environment(None), "examples": rows, "all_ok": all(r["ok"] for r in rows)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(args.out), json.dumps(results, indent=2) + "\n")
    print("| example | expected | ok | exit | s |\n|---|---|---|---|---|")
    for row in rows:
        print(f"| `{row['command']}` | {row['expected']} | {'yes' if row['ok'] else 'NO'} | {row['exit']} | "
              f"{row['seconds']} |")
    print(f"{sum(r['ok'] for r in rows)} of {len(rows)} as they should; wrote {args.out}")
    return 0 if results["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
