"""The file a backend loads for a model: an exported file as it is, or, for a checkpoint, an export made on demand
and cached in the model's cache folder (a run folder's ``exports/``)."""

from __future__ import annotations

from pathlib import Path

from ganforge.errors import UserError
from ganforge.export.model_source import ModelSource, resolve_model

from .runners import get_backend

SUFFIXES = {"onnx": ".onnx", "aoti": ".pt2", "engine": ".engine"}


def model_for_backend(model: ModelSource | str | Path, backend: str, precision: str = "fp32", quiet: bool = False,
                      device: str = "cpu") -> str:
    """The file ``backend`` loads for ``model`` (resolved already, or a path to resolve)."""
    source = resolve_model(model)
    kind = get_backend(backend).model_kind
    precision = get_backend(backend).file_precision(precision)
    if kind == "checkpoint":
        if not source.is_checkpoint:
            raise UserError(f"backend {backend} needs a run folder or checkpoint, got {source.given}")
        return str(source.file)
    if not source.is_checkpoint:
        if source.kind != kind:
            raise UserError(f"backend {backend} needs a {SUFFIXES[kind]} file, got {source.given}")
        return str(source.file)
    if kind == "engine":
        raise UserError(f"backend {backend} needs an engine: build one with `ganforge build-engine MODEL.onnx`")
    return str(_cached_export(source, kind, precision, quiet, device if kind == "aoti" else "cpu"))


EXPORT_SECONDS = {"onnx": 3.0, "aoti": 60.0}  # rough cost of an export on demand (int8: +5 s of calibration)


def export_seconds(source: ModelSource, backend: str, precision: str = "fp32", device: str = "cpu") -> float:
    """About how long ``model_for_backend`` takes to make the backend's file: 0 for a file, a checkpoint's own
    backends and exports already cached."""
    kind = get_backend(backend).model_kind
    precision = get_backend(backend).file_precision(precision)
    if not source.is_checkpoint or kind in ("checkpoint", "engine"):
        return 0.0
    if _cached(source, _export_target(source, kind, precision, device if kind == "aoti" else "cpu")):
        return 0.0
    return EXPORT_SECONDS[kind] + (5.0 if precision == "int8" else 0.0)


def _export_target(source: ModelSource, kind: str, precision: str, device: str) -> Path:
    on = "" if device == "cpu" else f"-{device.replace(':', '')}"  # AOTInductor packages are per device
    return source.cache_folder / f"generator-{precision}{on}{SUFFIXES[kind]}"


def _cached(source: ModelSource, target: Path) -> bool:
    from ganforge.export.metadata import read_metadata

    try:
        return target.is_file() and read_metadata(target)["checkpoint_sha256"] == source.sha256
    except UserError:
        return False  # stale or foreign: export again


def _cached_export(source: ModelSource, kind: str, precision: str, quiet: bool, device: str) -> Path:
    from ganforge.export.api import ExportConfig, describe, export

    target = _export_target(source, kind, precision, device)
    if _cached(source, target):
        return target
    source.cache_folder.mkdir(parents=True, exist_ok=True)
    result = export(ExportConfig(source=str(source.file), out=str(target), precision=precision, max_batch=1024,
                                 verify_batches=(1, 3, 64), device=device))
    if not quiet:
        print(describe(result))
    return target
