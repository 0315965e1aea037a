"""Find (or make) the model file a backend needs: a run folder is exported on demand, cached in the run folder."""

from __future__ import annotations

from pathlib import Path

from ganforge.errors import UserError
from ganforge.export.metadata import read_metadata, sha256_file
from ganforge.train.checkpoint import find_checkpoint

from .runners import get_backend

SUFFIXES = {"onnx": ".onnx", "aoti": ".pt2", "engine": ".engine"}


def is_training_output(path: Path) -> bool:
    return path.is_dir() or path.suffix == ".pt"


def model_for_backend(path: str | Path, backend: str, precision: str = "fp32", quiet: bool = False,
                      device: str = "cpu", cache: Path | None = None) -> str:
    """The file ``backend`` loads for ``path``. A run folder or checkpoint is exported on demand into
    ``RUN/exports/`` (a checkpoint outside a run folder: ``cache``, else the checkpoint's own folder)."""
    path = Path(path)
    kind = get_backend(backend).model_kind
    precision = get_backend(backend).file_precision(precision)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if kind == "checkpoint":
        if not is_training_output(path):
            raise UserError(f"backend {backend} needs a run folder or checkpoint, got {path}")
        return str(find_checkpoint(path))
    if not is_training_output(path):
        if path.suffix != SUFFIXES[kind]:
            raise UserError(f"backend {backend} needs a {SUFFIXES[kind]} file, got {path}")
        return str(path)
    if kind == "engine":
        raise UserError(f"backend {backend} needs an engine: build one with `ganforge build-engine MODEL.onnx`")
    return str(_cached_export(path, kind, precision, quiet, device if kind == "aoti" else "cpu", cache))


def _run_folder_of(checkpoint: Path) -> Path | None:
    parent = checkpoint.parent
    return parent.parent if parent.name == "checkpoints" and (parent.parent / "config.json").is_file() else None


def _cached_export(source: Path, kind: str, precision: str, quiet: bool, device: str, cache: Path | None) -> Path:
    from ganforge.export.api import ExportConfig, describe, export

    checkpoint = find_checkpoint(source)
    run = source if source.is_dir() else _run_folder_of(checkpoint)
    folder = run / "exports" if run else (cache or checkpoint.parent) / "exports"
    on = "" if device == "cpu" else f"-{device.replace(':', '')}"  # AOTInductor packages are per device
    target = folder / f"generator-{precision}{on}{SUFFIXES[kind]}"
    if target.is_file():
        try:
            if read_metadata(target)["checkpoint_sha256"] == sha256_file(checkpoint):
                return target
        except UserError:
            pass  # stale or foreign: export again
    folder.mkdir(parents=True, exist_ok=True)
    result = export(ExportConfig(source=str(checkpoint), out=str(target), precision=precision, max_batch=1024,
                                 verify_batches=(1, 3, 64), device=device))
    if not quiet:
        print(describe(result))
    return target
