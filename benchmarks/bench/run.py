"""`bench()`: every backend x precision x batch size x scenario, each failure reported and skipped past."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ganforge.errors import UserError, one_line
from ganforge.export.model_source import ModelSource, resolve_model
from ganforge.export.verify import psnr
from ganforge.isolation import child_main, run_isolated
from ganforge.latents import LatentControls, latents_for_seeds
from ganforge.serve.runtime.auto import ACCURACY_SEEDS, AUTO, AutoConfig, choose, generator_reference, native_precisions
from ganforge.serve.runtime.latent_space import LatentSpace
from ganforge.serve.runtime.model_files import model_for_backend
from ganforge.serve.runtime.runners import backends, open_runner
from ganforge.serve.runtime.runners.base import offline_in_flight

from . import scenarios
from .environment import environment, generator_gflops_per_image, matmul_ceiling_gflops
from .report import write_json

SCENARIOS = ("offline", "single-stream", "server", "server-http")
DEFAULT_SCENARIOS = SCENARIOS[:3]  # server-http starts `ganforge serve` per backend: asked for by name
SERVER_LOAD = (0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.3)  # offered rates as fractions of offline throughput
DEFAULT_BACKENDS = ("torch", "torch-compile", "onnxruntime", "openvino", "aoti", "tensorrt")


@dataclass(frozen=True)
class BenchConfig:
    """Example: ``bench(BenchConfig(model="runs/00000-digits-dcgan", out="bench", backends=("onnxruntime",)))``."""

    model: str
    out: str
    backends: tuple[str, ...] = ("all",)
    precisions: tuple[str, ...] = ()  # (): every precision this machine runs natively (serve/runtime/auto.py)
    batch_sizes: tuple[int, ...] = (1, 8, 64, 256)
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    min_duration: float = 3.0
    server_duration: float = 3.0
    latency_bound_ms: float = 100.0
    server_max_batch: int = 64
    server_delay_us: int = 2000
    device: str = "cpu"
    truncation: float = 1.0  # the latents (and the server's requests) with truncation psi, as sample and serve take it

    def __post_init__(self) -> None:
        LatentControls(self.truncation)  # psi in (0, 1]
        unknown = set(self.scenarios) - set(SCENARIOS)
        if unknown:
            raise UserError(f"unknown scenario {', '.join(sorted(unknown))} (choose from {', '.join(SCENARIOS)})")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise UserError("--batch-sizes must be positive integers")
        if self.min_duration <= 0 or self.server_duration <= 0 or self.latency_bound_ms <= 0:
            raise UserError("durations and --latency-bound-ms must be positive")
        if not Path(self.model).exists():
            raise UserError(f"{self.model}: no such file or folder")
        if not self.precisions:
            object.__setattr__(self, "precisions", native_precisions(self.device))
        offered = {p for b in backends().values() for p in b.precisions}
        wrong = [p for p in self.precisions if p not in offered]
        if wrong:
            raise UserError(f"unknown precision {', '.join(wrong) or '(none)'} "
                            f"(choose from {', '.join(sorted(offered))})")

    def backend_names(self) -> list[str]:
        known = backends()
        names = [AUTO, *DEFAULT_BACKENDS] if self.backends == ("all",) else list(self.backends)
        if self.backends == ("all",) and self.device != "cpu":
            names.insert(1, "torch-cudagraph")
        for name in names:
            if name not in known and name != AUTO:
                raise UserError(f"unknown backend {name!r} (choose from {', '.join(known)})")
        return names


def bench(config: BenchConfig, progress: bool = True) -> dict:
    """Each backend x precision is measured in a child process (``ganforge.isolation``), one after another: a
    runtime that takes its process down (AOTInductor's segfault on CUDA) costs its own row, not the run, and no
    backend inherits another's threads, caches or allocations."""
    names = config.backend_names()
    source = resolve_model(config.model)
    reference, gflops = _reference(source)
    ceilings = _ceilings(config)
    env = environment(ceilings.get("fp32")) | {"matmul_gflops": ceilings, "device": config.device,
                                                "generator_gflops_per_image": gflops, "model": str(config.model)}
    report = {"environment": env, "truncation": config.truncation, "results": []}
    combos = [[b, p] for b in names for p in config.precisions if b != AUTO and p in backends()[b].precisions]
    combos = [[AUTO, AUTO]] * (AUTO in names) + combos
    if not combos:
        raise UserError(f"no backend among {', '.join(names)} runs precision {', '.join(config.precisions)}")
    bar = tqdm(total=len(combos), desc="bench", unit="backend", disable=not progress)
    where = {}

    def on_message(message: dict) -> None:
        if "start" in message:
            bar.set_postfix_str(" ".join(message["start"]))
            where.clear()
        elif "measuring" in message:
            where.update(message["measuring"])
        elif "row" in message:
            report["results"].append(message["row"])
        elif "crashed" in message:
            backend, precision = message["crashed"]
            report["results"].append(_row(backend, precision, where.get("scenario", "load"), where.get("batch"),
                                          io=where.get("io", "host"), status="error",
                                          error=f"crashed the process ({message['ending']})"))
        if "done" in message or "crashed" in message:
            raise_ceilings(report)
            write_json(report, Path(config.out))
            bar.update()

    with tempfile.TemporaryDirectory(prefix="ganforge-bench-") as tmp:
        if reference is not None:
            np.save(Path(tmp) / "reference.npy", reference)
        job = {"config": asdict(config), "model": source.to_dict(),
               "reference": None if reference is None else str(Path(tmp) / "reference.npy"),
               "gflops": gflops, "ceilings": ceilings}
        run_isolated("ganforge.benchmarks.bench.run", job, combos, on_message, "bench")
    bar.close()
    return report


def _ceilings(config: BenchConfig) -> dict[str, float]:
    """The matmul roofline per float precision benched (on a CPU, bf16/fp16 only where it has them natively;
    fp32 is always measured). int8 rows get no ceiling: no int8 GEMM is measured to hold them to."""
    wanted = {"fp32", *config.precisions} & set(native_precisions(config.device)) - {"int8"}
    return {p: matmul_ceiling_gflops(config.device, p) for p in sorted(wanted)}


def raise_ceilings(report: dict) -> None:
    """No row may run faster than the machine's measured ceiling: where one does, the ceiling was under-measured,
    so it is raised to that row, the percentages recomputed, and the report says so."""
    ceilings = report["environment"]["matmul_gflops"]
    for precision, ceiling in list(ceilings.items()):
        rows = [r for r in report["results"] if r.get("ceiling_precision") == precision and
                r.get("gflops_per_second")]
        best = max((r["gflops_per_second"] for r in rows), default=0.0)
        if best > ceiling:
            raised = report["environment"].setdefault("ceiling_raised", {})
            raised[precision] = {"measured": raised.get(precision, {}).get("measured", ceiling), "raised_to": best}
            ceilings[precision] = best
        for row in rows:
            row["percent_of_matmul_ceiling"] = 100 * row["gflops_per_second"] / ceilings[precision]


def _reference(source: ModelSource):
    """fp32 PyTorch images for the accuracy column, and the generator's FLOPs per image (checkpoints only)."""
    if not source.is_checkpoint:
        return None, None
    from ganforge.train.checkpoint import load_generator

    generator, info = load_generator(source.file)
    z_dim = info["generator_config"]["z_dim"]
    return generator_reference(generator, z_dim), generator_gflops_per_image(generator, z_dim)


def _row(backend: str, precision: str, scenario: str, batch_size: int | None, **values) -> dict:
    return {"backend": backend, "precision": precision, "scenario": scenario, "batch_size": batch_size,
            "status": "ok", **values}


def _bench_backend(config, source, backend, precision, reference, gflops, ceilings, measuring) -> Iterator[dict]:
    """The rows of one backend x precision, as they are measured; ``measuring(scenario=, batch=, io=)`` is called
    before each measurement."""
    measuring(scenario="load")
    try:
        if backend == AUTO:  # auto's choice at the server batch size, benched under the label auto:<backend>
            choice = choose(AutoConfig(model=source, device=config.device, batch_size=config.server_max_batch,
                                       precisions=config.precisions, quiet=True))
            backend, precision = f"{AUTO}:{choice.backend}", choice.precision
            runner = open_runner(choice.backend, choice.model_path, config.device, choice.precision)
        else:
            path = model_for_backend(source, backend, precision, quiet=True, device=config.device)
            runner = open_runner(backend, path, config.device, precision)
    except Exception as error:  # a backend that cannot load is reported, and the others still run
        yield _row(backend, precision, "load", None, status="error", error=one_line(error))
        return
    with runner:
        accuracy = _accuracy(runner, reference)
        offline_rates = {}
        batch_sizes = [b for b in config.batch_sizes if b <= runner.info.max_batch]
        graphs = {"cuda_graphs": runner.info.cuda_graphs}
        for scenario in config.scenarios:
            for batch in batch_sizes if scenario == "offline" else [None]:
                for io in _io_modes(scenario, runner):
                    measuring(scenario=scenario, batch=batch, io=io)
                    try:
                        yield _measure(config, runner, backend, precision, scenario, batch, io, offline_rates,
                                       gflops, ceilings, accuracy | graphs)
                    except Exception as error:
                        yield _row(backend, precision, scenario, batch, status="error", error=one_line(error),
                                   **graphs)


def _io_modes(scenario: str, runner) -> tuple[str, ...]:
    """Offline on a GPU is measured with latents and images in host memory (copies included; as floats, and as
    uint8 converted on the device where the runner can), and device-only."""
    if scenario == "offline" and runner.info.device.startswith("cuda") and hasattr(runner, "device_call"):
        return ("host", "host-uint8", "device") if hasattr(runner, "infer_uint8") else ("host", "device")
    return ("host",)


def _measure(config, runner, backend, precision, scenario, batch, io, offline_rates, gflops, ceilings, fields):
    """One row; ``fields`` (accuracy, CUDA graphs) are copied into it."""
    controls = LatentSpace.of(runner.info).controls(config.truncation)
    fields = fields | ({"truncation": config.truncation} if config.truncation != 1.0 else {})
    if scenario == "offline":
        result = scenarios.offline(runner, batch, config.min_duration, io, offline_in_flight(runner), controls)
        if io == "host":
            offline_rates[batch] = result["images_per_second"]
        if gflops:
            result["gflops_per_second"] = result["images_per_second"] * gflops
            if precision in ceilings:  # raise_ceilings computes the percentage
                result["ceiling_precision"] = precision
        return _row(backend, precision, scenario, batch, io=io, **result, **fields)
    if scenario == "single-stream":
        return _row(backend, precision, scenario, 1, **scenarios.single_stream(runner, config.min_duration, controls),
                    **fields)
    max_batch = min(config.server_max_batch, runner.info.max_batch)
    capacity = offline_rates.get(max_batch) or max(offline_rates.values(), default=0.0) or \
        scenarios.offline(runner, max_batch, config.min_duration)["images_per_second"]
    rates = [f * capacity for f in SERVER_LOAD]
    if scenario == "server":
        result = scenarios.server(runner, rates, config.server_duration, config.latency_bound_ms, max_batch,
                                  config.server_delay_us, truncation=config.truncation)
    else:
        from .http_scenario import server_http
        from .http_server import serving

        with serving(runner.info.model_path, backend, precision, config.device, max_batch,
                     config.server_delay_us) as url:
            result = server_http(url, rates, config.server_duration, config.latency_bound_ms,
                                 truncation=config.truncation)
    result["offline_images_per_second"] = capacity
    result["images_per_second"] = result["saturated_images_per_second"]
    result["fraction_of_offline"] = result["images_per_second"] / capacity if capacity else None
    recorded = {key: fields[key] for key in ("cuda_graphs", "truncation") if key in fields}
    return _row(backend, precision, scenario, max_batch, **result, **recorded)


def _accuracy(runner, reference) -> dict:
    if reference is None:
        return {}
    images = runner.infer(latents_for_seeds(ACCURACY_SEEDS, runner.info.z_dim))
    error = float(np.abs(images.astype(np.float64) - reference).max())
    value = psnr(reference, images)
    return {"max_abs_error": error, "psnr_db": value if math.isfinite(value) else None}


def _prepare(job: dict, send) -> tuple:
    config = BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in job["config"].items()})
    reference = None if job["reference"] is None else np.load(job["reference"])
    return config, ModelSource.from_dict(job["model"]), reference


def _work(job: dict, state: tuple, combo: list, send) -> None:
    config, source, reference = state
    for row in _bench_backend(config, source, *combo, reference, job["gflops"], job["ceilings"],
                              lambda **where: send(measuring=where)):
        send(row=row)


if __name__ == "__main__":  # the child process of bench(), through the package's module (one _bench_backend)
    import sys

    from ganforge.benchmarks.bench import run as module

    sys.exit(child_main(module._prepare, module._work))
