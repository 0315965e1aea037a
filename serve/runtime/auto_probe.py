"""`--backend auto`'s measurements, in a child process: a candidate that takes the process down (a segfault in a
runtime's native code, as AOTInductor on CUDA did on an H100) costs its own row, not the user's sample, serve or
bench job.

The parent (``measure_isolated``) runs the candidates through ``ganforge.isolation``: the child sends
``{"against": ...}`` once the reference images are made and ``{"row": {...}}`` for each candidate. When the child
dies inside a candidate, that candidate becomes an error row naming the signal, and a fresh child measures the rest.
"""

from __future__ import annotations

import math
import sys

from ganforge.errors import one_line
from ganforge.export.model_source import ModelSource
from ganforge.export.verify import psnr
from ganforge.isolation import child_main, run_isolated
from ganforge.latents import latents_for_seeds

from .model_files import model_for_backend
from .runners import open_runner


def measure_pair(job: dict, name: str, precision: str, reference) -> dict:
    """One candidate's row: its PSNR against ``reference`` and, when accurate, its images/s at the batch size."""
    from ganforge.timing import measure

    from .auto import ACCURACY_SEEDS

    row = {"backend": name, "precision": precision}
    try:
        source = ModelSource.from_dict(job["model"])  # resolved by the parent, carried as plain values
        path = model_for_backend(source, name, precision, quiet=True, device=job["device"])
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
        row |= {"error": one_line(error)}
    return row


def measure_isolated(job: dict, pairs: list[tuple[str, str]], bar, isolated: bool = True) -> tuple[list[dict], str]:
    """The rows of ``pairs`` (in order) and what the reference images came from, measured in child processes, or
    with ``isolated`` False in this one (where no child can start: inside Triton's Python backend, whose interpreter
    is embedded in a stub binary)."""
    rows, against = [], [""]

    def on_message(message: dict) -> None:
        if "against" in message:
            against[0] = message["against"]
        elif "start" in message:
            bar.set_postfix_str(" ".join(message["start"]))
        elif "row" in message:
            rows.append(message["row"])
        elif "crashed" in message:
            backend, precision = message["crashed"]
            rows.append({"backend": backend, "precision": precision,
                         "error": f"crashed the process ({message['ending']})"})
        if "done" in message or "crashed" in message:
            bar.update()

    if isolated:
        run_isolated("ganforge.serve.runtime.auto_probe", job, [list(pair) for pair in pairs], on_message,
                     "--backend auto")
        return rows, against[0]
    send = lambda **message: on_message(message)  # noqa: E731
    reference = _prepare(job, send)
    for pair in pairs:
        send(start=list(pair))
        _work(job, reference, list(pair), send)
        send(done=list(pair))
    return rows, against[0]


def _prepare(job: dict, send) -> object:
    from .auto import reference_images

    reference, against = reference_images(ModelSource.from_dict(job["model"]), job["device"])
    send(against=against)
    return reference


def _work(job: dict, reference, pair: list, send) -> None:
    send(row=measure_pair(job, pair[0], pair[1], reference))


if __name__ == "__main__":  # through the package's module, so that there is one measure_pair
    from ganforge.serve.runtime import auto_probe

    sys.exit(child_main(auto_probe._prepare, auto_probe._work))
