"""Work items run in a child process, so that one whose native code takes the process down (a segfault in a
runtime, as AOTInductor on CUDA did on an H100) costs that item only, not the user's whole job.

The parent (``run_isolated``) starts ``python -m MODULE FD`` with the job as JSON on stdin, ``items`` among it. The
child (``child_main``) reports on pipe FD, one JSON line each: ``{"start": item}`` before an item, any messages of
its own while working on it, and ``{"done": item}`` after it; ``{"error": text}`` for a UserError that ends the job.
Every message goes to the parent's ``on_message``; when the child dies inside an item, ``on_message`` gets
``{"crashed": item, "ending": "killed by SIGSEGV"}`` and a fresh child takes the items after it.

    run_isolated("ganforge.serve.runtime.auto_probe", job, pairs, on_message)         # in the parent
    sys.exit(child_main(prepare, work))                                       # in MODULE's __main__
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable

from .errors import UserError

Send = Callable[..., None]


def run_isolated(module: str, job: dict, items: list, on_message: Callable[[dict], None], what: str) -> None:
    """Run ``items`` (JSON values, in order) through ``module``'s ``child_main``; ``what`` names the job in errors.
    Where this process has torch loaded, the child uses its thread count (serve --threads, a test's setting), not
    the machine's default."""
    if "torch" in sys.modules:
        job = job | {"torch_threads": sys.modules["torch"].get_num_threads()}
    remaining = list(items)
    while remaining:
        read_end, write_end = os.pipe()
        child = subprocess.Popen([sys.executable, "-m", module, str(write_end)], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, pass_fds=(write_end,))
        os.close(write_end)
        child.stdin.write(json.dumps(job | {"items": remaining}).encode())
        child.stdin.close()
        current, problem = None, None
        try:
            with os.fdopen(read_end) as messages:
                for line in messages:
                    try:
                        message = json.loads(line)
                    except json.JSONDecodeError:  # a line cut short by the child's death: the last one
                        break
                    if "error" in message:
                        problem = message["error"]
                        continue
                    if "start" in message:
                        current = message["start"]
                    elif "done" in message:
                        remaining.pop(0)
                        current = None
                    on_message(message)
        except BaseException:  # Ctrl-C, or on_message failed: no child left behind
            child.kill()
            child.wait()
            raise
        code = child.wait()
        if problem is not None:
            raise UserError(problem)
        if current is None:  # it died outside any item (or finished): nothing to blame on an item
            if remaining:
                raise UserError(f"{what}: the measuring process ended early ({ending(code)})")
            break
        remaining.pop(0)
        on_message({"crashed": current, "ending": ending(code)})


def ending(code: int) -> str:
    """How a child process ended, from its return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def child_main(prepare: Callable[[dict, Send], object], work: Callable[[dict, object, object, Send], None]) -> int:
    """The child's side: the job from stdin, ``state = prepare(job, send)`` once (a UserError there ends the job
    with its message), then ``work(job, state, item, send)`` between each item's start and done messages."""
    job = json.load(sys.stdin)
    if "torch_threads" in job:  # run_isolated: the parent's setting
        import torch

        torch.set_num_threads(job["torch_threads"])
    with os.fdopen(int(sys.argv[1]), "w", buffering=1) as report:
        def send(**message) -> None:
            report.write(json.dumps(message) + "\n")

        try:
            state = prepare(job, send)
        except UserError as error:
            send(error=str(error))
            return 2
        for item in job["items"]:
            send(start=item)
            work(job, state, item, send)
            send(done=item)
    return 0
