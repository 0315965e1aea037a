"""`--backend auto`'s measurements, in a child process: a candidate that takes the process down (a segfault in a
runtime's native code, as AOTInductor on CUDA did on an H100) costs its own row, not the user's sample, serve or
bench job.

The parent (``measure_isolated``) starts ``python -m ganforge.serve.auto_probe FD`` with the job as JSON on its
stdin. The child reports on pipe FD, one JSON line each: ``{"against": ...}`` once the reference images are made,
``{"start": [backend, precision]}`` before a candidate and ``{"row": {...}}`` after it. When the child dies inside a
candidate, that candidate becomes an error row naming the signal, and a fresh child measures the rest.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

from ganforge.errors import UserError
from ganforge.export.verify import psnr

from .latents import latents_for_seeds
from .models import model_for_backend
from .runners import open_runner


def measure_pair(job: dict, name: str, precision: str, reference) -> dict:
    """One candidate's row: its PSNR against ``reference`` and, when accurate, its images/s at the batch size."""
    from ganforge.benchmarks.timing import measure

    from .auto import ACCURACY_SEEDS

    row = {"backend": name, "precision": precision}
    try:
        cache = Path(job["cache"]) if job["cache"] else None  # JSON carried it as text
        path = model_for_backend(job["model"], name, precision, quiet=True, device=job["device"], cache=cache)
        with open_runner(name, path, job["device"], precision) as runner:
            batch = min(job["batch_size"], runner.info.max_batch)
            value = psnr(reference, runner.infer(latents_for_seeds(ACCURACY_SEEDS, runner.info.z_dim)))
            row |= {"model_path": str(path), "psnr_db": value if math.isfinite(value) else None,
                    "accurate": value >= job["min_psnr"]}
            if row["accurate"]:
                z = latents_for_seeds(range(batch), runner.info.z_dim)
                timing = measure(lambda: runner.infer(z), batch, job["seconds"])
                row |= {"images_per_second": timing.items_per_second, "batch_size": batch,
                        "window_rates": timing.window_rates}
    except Exception as error:  # a candidate that cannot load here is a row, not the end of the choice
        row |= {"error": f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}"}
    return row


def measure_isolated(job: dict, pairs: list[tuple[str, str]], bar) -> tuple[list[dict], str]:
    """The rows of ``pairs`` (in order) and what the reference images came from, measured in child processes."""
    rows, remaining, against = [], list(pairs), ""
    while remaining:
        read_end, write_end = os.pipe()
        child = subprocess.Popen([sys.executable, "-m", "ganforge.serve.auto_probe", str(write_end)],
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=(write_end,))
        os.close(write_end)
        child.stdin.write(json.dumps(job | {"pairs": remaining}).encode())
        child.stdin.close()
        current, problem = None, None
        with os.fdopen(read_end) as messages:
            for line in messages:
                message = json.loads(line)
                if "against" in message:
                    against = message["against"]
                elif "start" in message:
                    current = tuple(message["start"])
                    bar.set_postfix_str(" ".join(current))
                elif "row" in message:
                    rows.append(message["row"])
                    remaining.pop(0)
                    current = None
                    bar.update()
                elif "error" in message:
                    problem = message["error"]
        code = child.wait()
        if problem is not None:
            raise UserError(problem)
        if current is None:  # it died outside any candidate (or finished): nothing to blame on a row
            if remaining:
                raise UserError(f"--backend auto: the measuring process ended early ({_ending(code)})")
            break
        rows.append({"backend": current[0], "precision": current[1], "error": f"crashed the process ({_ending(code)})"})
        remaining.pop(0)
        bar.update()
    return rows, against


def _ending(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def main(report_fd: int) -> int:
    import torch

    from .auto import reference_images

    job = json.load(sys.stdin)
    torch.set_num_threads(job["torch_threads"])
    with os.fdopen(report_fd, "w", buffering=1) as report:
        def send(**message) -> None:
            report.write(json.dumps(message) + "\n")

        try:
            reference, against = reference_images(Path(job["model"]), job["device"])
        except UserError as error:
            send(error=str(error))
            return 2
        send(against=against)
        for name, precision in job["pairs"]:
            send(start=[name, precision])
            send(row=measure_pair(job, name, precision, reference))
    return 0


if __name__ == "__main__":  # through the package's module, so that there is one measure_pair
    from ganforge.serve.auto_probe import main as probe_main

    sys.exit(probe_main(int(sys.argv[1])))
