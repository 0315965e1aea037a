"""`--backend auto`: ganforge's own tactic choice across runtimes.

Every backend x precision pair that can run here is opened, checked against the fp32 reference on fixed seeds
(PSNR of the images, >= ``min_psnr`` to stay in the race) and timed at the batch size in use; the fastest that
stays accurate wins. The choice and the whole table are cached in ``auto.json`` beside the model, keyed by the
model's sha256 and the machine (CPU model and instruction sets, GPU, threads, library versions), so the next
run on the same machine starts at once; anything else in the cache is re-measured, never trusted.

    choice = choose(AutoConfig(model="runs/00000-digits-dcgan", batch_size=64))
    print(choice.backend, choice.precision, choice.model_path)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ganforge.errors import UserError
from ganforge.export.metadata import sha256_file
from ganforge.export.model_source import ModelSource, resolve_model
from ganforge.files import atomic_write_bytes
from ganforge.latents import latents_for_seeds

from .runners import backends, open_runner

AUTO = "auto"
CACHE_NAME = "auto.json"
CACHE_FORMAT = "ganforge-auto/1"
DEFAULT_MIN_PSNR = 40.0
ACCURACY_SEEDS = range(16)


@dataclass(frozen=True)
class AutoConfig:
    model: str | Path | ModelSource  # a path is resolved by choose(); callers that resolved it pass the object
    device: str = "cpu"
    batch_size: int = 64
    min_psnr: float = DEFAULT_MIN_PSNR
    precisions: tuple[str, ...] | None = None  # None: every precision this machine runs natively
    backends: tuple[str, ...] | None = None  # None: every backend available here
    seconds: float = 1.5  # timing per candidate
    refresh: bool = False  # measure again even when the cache has an answer
    cache: Path | None = None  # for a checkpoint outside a run folder (as sample's --out), when model is a path
    quiet: bool = False  # no progress bar, no table, no line
    report: bool = True  # print the measured table and the choice (to stderr)
    isolated: bool = True  # measure in child processes (a crashing candidate costs its row); False: in this one
    images: int | None = None  # the job's size (sample, eval): candidates that cost more to try than it could gain
    # are skipped, with the reason; None: unbounded (a server)

    def __post_init__(self) -> None:
        if not (isinstance(self.min_psnr, (int, float)) and 10 <= self.min_psnr <= 150):
            raise UserError(f"--min-psnr must be between 10 and 150 dB, got {self.min_psnr}")
        if self.batch_size < 1:
            raise UserError("--batch-size must be at least 1")
        if self.seconds <= 0:
            raise UserError("the timing per candidate must be positive")


@dataclass(frozen=True)
class Choice:
    backend: str
    precision: str
    model_path: str  # the file the backend loads
    images_per_second: float
    psnr_db: float | None
    reason: str
    table: list[dict] = field(default_factory=list)
    cached: bool = False


def native_precisions(device: str = "cpu") -> tuple[str, ...]:
    """The precisions worth trying here: fp32 always; bf16/fp16 where the CPU or GPU computes them natively; int8
    (quantized inference is a CPU and TensorRT feature, kept only where it measures faster and accurate)."""
    import torch

    from ganforge.machine import cpu_has_native_bf16, cpu_has_native_fp16

    if device.startswith("cuda"):
        return ("fp32", "fp16", "bf16", "int8") if torch.cuda.is_bf16_supported() else ("fp32", "fp16", "int8")
    found = ["fp32"]
    found += ["bf16"] if cpu_has_native_bf16() else []
    found += ["fp16"] if cpu_has_native_fp16() else []
    return (*found, "int8")


def candidates(model: ModelSource | str | Path, device: str, precisions: tuple[str, ...] | None = None,
               names: tuple[str, ...] | None = None) -> list[tuple[str, str]]:
    """(backend, precision) pairs that can load ``model`` here: a checkpoint feeds every backend (exports are made
    on demand), an exported file only the backends that load its kind, in the precision it was written in."""
    source = resolve_model(model)
    wanted = precisions or native_precisions(device)
    file_precision = None if source.is_checkpoint else _file_precision(source)
    pairs = []
    for name, backend in backends().items():
        if (names and name not in names) or backend.availability() is not None:
            continue
        on_gpu_only = name in ("torch-cudagraph", "tensorrt")
        if device == "cpu" and on_gpu_only:
            continue
        if not source.is_checkpoint and backend.model_kind != source.kind:
            continue
        if source.is_checkpoint and backend.model_kind == "engine":
            continue  # engines are built by `ganforge build-engine`, not on the fly
        pairs += [(name, p) for p in backend.precisions if p in wanted
                  and (file_precision is None or backend.file_precision(p) == file_precision)]
    return pairs


def _file_precision(source: ModelSource) -> str | None:
    """The precision an exported file was written in (a file loads as what it is, unless the backend converts)."""
    if source.kind == "engine":
        return None  # TensorRT decides at build time
    return source.metadata.get("precision", "fp32")


def choose(config: AutoConfig) -> Choice:
    """The fastest accurate backend for ``config.model`` on this machine: from the cache, else measured."""
    source = resolve_model(config.model, cache=config.cache)
    cache_file = source.cache_file(CACHE_NAME)
    key = _key(config, source.sha256)
    if not config.refresh:
        cached = _cached(cache_file, key, config)
        if cached:
            return cached
    pairs = candidates(source, config.device, config.precisions, config.backends)
    if not pairs:
        raise UserError(f"--backend auto: no backend here can run {source.given} in "
                        f"{', '.join(config.precisions or native_precisions(config.device))}")
    skipped = []
    if config.images is not None and len(pairs) > 1:
        pairs, skipped, unmeasured = _worth_measuring(config, source, pairs)
        if unmeasured is not None:
            if config.report and not config.quiet:
                print(f"auto: {unmeasured.backend} {unmeasured.precision} ({unmeasured.reason})", file=sys.stderr)
            return unmeasured
    choice = _measure(config, source, pairs)
    if skipped:  # a partial answer is not cached: a larger job measures the rest
        if config.report and not config.quiet:
            print(f"auto: not tried for {config.images:,} images (each would cost more than it could save): "
                  f"{', '.join(f'{b} {p}' for b, p in skipped)}", file=sys.stderr)
    else:
        _store(cache_file, key, choice)
    return choice


def backend_file(source: ModelSource, backend: str, precision: str | None, device: str = "cpu",
                 **auto) -> tuple[str, str, str]:
    """(backend, precision, the file it loads) for a backend as the user names it: for ``auto`` the choice (more
    AutoConfig fields in ``auto``; a given precision is the only one tried), else that backend in ``precision``
    (fp32 by default)."""
    if backend == AUTO:
        choice = choose(AutoConfig(model=source, device=device, precisions=(precision,) if precision else None,
                                   **auto))
        return choice.backend, choice.precision, choice.model_path
    from .model_files import model_for_backend

    return backend, precision or "fp32", model_for_backend(source, backend, precision or "fp32", device=device)


LOAD_SECONDS = 0.5  # opening a runner, beyond its setup (a rough figure: the bound only needs the order)
DEFAULT_ORDER = ("onnxruntime", "torch", "openvino", "aoti", "tensorrt")  # cheapest to start first


def _worth_measuring(config: AutoConfig, source: ModelSource, pairs: list[tuple[str, str]]):
    """For a job of ``config.images``: the candidates whose trial costs (setup, export, loading, timing) less than
    half the job takes at the cheapest candidate's speed, measured briefly here. Returns (pairs to measure, pairs
    skipped, a Choice of the cheapest candidate when nothing else repays, else None)."""
    from ganforge.timing import measure

    from .model_files import export_seconds, model_for_backend
    from .runners import get_backend

    def cost(pair):
        backend = get_backend(pair[0])
        return export_seconds(source, pair[0], pair[1], config.device) + backend.setup_seconds(pair[1])

    order = {name: i for i, name in enumerate(DEFAULT_ORDER)}
    fp32 = [p for p in pairs if p[1] == "fp32"] or pairs
    default = min(fp32, key=lambda p: (cost(p), order.get(p[0], len(order))))
    path = model_for_backend(source, *default, quiet=True, device=config.device)
    with open_runner(default[0], path, config.device, default[1]) as runner:
        batch = min(config.batch_size, runner.info.max_batch)
        z = latents_for_seeds(range(batch), runner.info.z_dim)
        rate = measure(lambda: runner.infer(z), batch, min(config.seconds, 0.3)).items_per_second
    job = config.images / rate
    trial = {p: LOAD_SECONDS + config.seconds + cost(p) for p in pairs if p != default}
    kept = [p for p in pairs if p == default or trial[p] < job / 2]
    skipped = [p for p in pairs if p not in kept]
    if len(kept) > 1 or default[1] != "fp32":  # anything but fp32 is checked for accuracy first
        return kept, skipped, None
    reason = (f"a job of {config.images:,} images takes ~{job:.1f} s at {rate:.0f} img/s here; trying another backend "
              f"costs at least {min(trial.values()):.1f} s, more than it could save (larger jobs measure them all)")
    return kept, skipped, Choice(default[0], default[1], path, rate, None, reason)


def machine() -> dict:
    """What decides which backend is fastest: the CPU and its instruction sets, the GPU, threads, versions."""
    import torch

    from ganforge.machine import cpu_features, cpu_model, versions

    return {"cpu": cpu_model(), "cpu_features": cpu_features(), "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "versions": versions(("ganforge", "torch", "onnxruntime", "openvino", "nncf", "tensorrt"))}


def _key(config: AutoConfig, model_sha256: str) -> dict:
    return {"model_sha256": model_sha256, "machine": machine(), "device": config.device,
            "batch_size": config.batch_size, "min_psnr": float(config.min_psnr),
            "precisions": list(config.precisions or native_precisions(config.device)),
            "backends": list(config.backends) if config.backends else None}


def _key_id(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _read_cache(cache_file: Path) -> dict:
    if not cache_file.is_file():
        return {}
    try:
        body = json.loads(cache_file.read_text())
        if body.get("format") != CACHE_FORMAT or not isinstance(body.get("entries"), dict):
            raise ValueError(f"not a {CACHE_FORMAT} file")
        return body["entries"]
    except (OSError, UnicodeDecodeError, ValueError, AttributeError) as error:
        print(f"auto: ignoring {cache_file} ({error}); measuring again", file=sys.stderr)
        return {}


def _cached(cache_file: Path, key: dict, config: AutoConfig) -> Choice | None:
    entry = _read_cache(cache_file).get(_key_id(key))
    if not isinstance(entry, dict) or entry.get("key") != key:
        if cache_file.is_file() and not config.quiet:
            print(f"auto: no choice cached in {cache_file} for this model and machine; measuring", file=sys.stderr)
        return None
    try:
        choice = Choice(**{**entry["choice"], "cached": True})
        chosen = Path(choice.model_path)
        if not chosen.is_file() or sha256_file(chosen) != entry["model_file_sha256"]:
            raise ValueError(f"{chosen} changed since it was measured")
    except (KeyError, TypeError, ValueError, OSError) as error:
        print(f"auto: cached choice unusable ({error}); measuring again", file=sys.stderr)
        return None
    if config.report and not config.quiet:
        print(f"auto: {choice.backend} {choice.precision} ({choice.reason}; cached in {cache_file})", file=sys.stderr)
    return choice


def _store(cache_file: Path, key: dict, choice: Choice) -> None:
    entries = _read_cache(cache_file) if cache_file.is_file() else {}
    entries[_key_id(key)] = {"key": key, "choice": {k: v for k, v in asdict(choice).items() if k != "cached"},
                             "model_file_sha256": sha256_file(Path(choice.model_path))}
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cache_file, json.dumps({"format": CACHE_FORMAT, "entries": entries}, indent=1) + "\n")


def generator_reference(generator, z_dim: int) -> np.ndarray:
    """A loaded fp32 PyTorch generator's images for ACCURACY_SEEDS."""
    import torch

    with torch.no_grad():
        return generator(torch.from_numpy(latents_for_seeds(ACCURACY_SEEDS, z_dim))).numpy()


def reference_images(source: ModelSource, device: str) -> tuple[np.ndarray, str]:
    """fp32 images for ACCURACY_SEEDS: the PyTorch generator for a checkpoint, else the model file itself through
    its first fp32 backend (exports were verified against PyTorch when they were written)."""
    if source.is_checkpoint:
        from ganforge.train.checkpoint import load_generator

        generator, info = load_generator(source.file)
        return generator_reference(generator, info["generator_config"]["z_dim"]), "PyTorch fp32"
    for name, precision in candidates(source, device, ("fp32",)):
        with open_runner(name, str(source.file), device, precision) as runner:
            return runner.infer(latents_for_seeds(ACCURACY_SEEDS, runner.info.z_dim)), f"{name} fp32 on the file"
    raise UserError(f"no backend here can run {source.given} in fp32 to serve as the accuracy reference")


def _measure(config: AutoConfig, source: ModelSource, pairs: list[tuple[str, str]]) -> Choice:
    from tqdm import tqdm

    from .auto_probe import measure_isolated

    job = {"model": source.to_dict(), "device": config.device, "batch_size": config.batch_size,
           "min_psnr": config.min_psnr, "seconds": config.seconds}
    bar = tqdm(total=len(pairs), desc="auto: measuring backends", unit="backend", disable=config.quiet,
               dynamic_ncols=True)
    rows, against = measure_isolated(job, pairs, bar, config.isolated)
    bar.close()
    timed = [r for r in rows if "images_per_second" in r]
    if not timed:
        best = max((r for r in rows if "psnr_db" in r), key=lambda r: r["psnr_db"] or math.inf, default=None)
        detail = f"; the most accurate was {best['backend']} {best['precision']} at {best['psnr_db']:.1f} dB" \
            if best and best["psnr_db"] is not None else ""
        raise UserError(f"--backend auto: no backend reached PSNR >= {config.min_psnr:g} dB against {against}"
                        f"{detail} (lower --min-psnr, or name a --backend)")
    fastest = max(timed, key=lambda r: r["images_per_second"])
    fp32 = [r for r in timed if r["precision"] == "fp32"]
    baseline = next((r for r in fp32 if r["backend"] == "torch"), fp32[0] if fp32 else None)
    speedup = f", {fastest['images_per_second'] / baseline['images_per_second']:.2f}x {baseline['backend']} fp32" \
        if baseline else ""
    shown = "exact" if fastest["psnr_db"] is None else f"PSNR {fastest['psnr_db']:.1f} dB"
    reason = (f"fastest of {len(timed)} accurate candidates at batch {fastest['batch_size']}: "
              f"{fastest['images_per_second']:.0f} img/s{speedup}, {shown} vs {against}")
    choice = Choice(fastest["backend"], fastest["precision"], fastest["model_path"], fastest["images_per_second"],
                    fastest["psnr_db"], reason, rows)
    if config.report and not config.quiet:
        print(format_table(choice), file=sys.stderr)
        print(f"auto: {choice.backend} {choice.precision} ({reason})", file=sys.stderr)
    return choice


def format_table(choice: Choice) -> str:
    lines = [f"{'backend':<15} {'precision':<9} {'PSNR dB':>8} {'img/s':>9}  note"]
    for row in sorted(choice.table, key=lambda r: -r.get("images_per_second", -1)):
        value = row.get("psnr_db")
        shown = "-" if "psnr_db" not in row else ("exact" if value is None else f"{value:.1f}")
        rate = f"{row['images_per_second']:.0f}" if "images_per_second" in row else "-"
        note = row.get("error") or ("" if row.get("accurate", True) else "below --min-psnr")
        mark = " <- chosen" if (row["backend"], row["precision"]) == (choice.backend, choice.precision) else ""
        lines.append(f"{row['backend']:<15} {row['precision']:<9} {shown:>8} {rate:>9}  {note}{mark}")
    return "\n".join(lines)
