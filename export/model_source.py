"""What a user names as MODEL, resolved once: a run folder, a checkpoint or an exported generator file.

Every command that takes a model (export, sample, serve, bench, eval, the Triton repository) resolves it here, once,
and passes the object down. Nothing else spells out a run folder's layout (``checkpoints/``, ``exports/``).

    model = resolve_model("runs/00000-digits-dcgan", checkpoint="best")
    model.kind, model.file, model.cache_folder, model.z_dim   # "checkpoint", .../best.pt, .../exports, 64
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ganforge.errors import UserError
from ganforge.train.checkpoint import find_checkpoint, load_checkpoint

from .metadata import generator_metadata, read_metadata, sha256_file

FILE_KINDS = {".onnx": "onnx", ".pt2": "aoti", ".engine": "engine"}  # exported generator files, by suffix
EXPORTS = "exports"  # a run folder's cache of exports made on demand and of the backend choice


@dataclass(frozen=True)
class ModelSource:
    """A resolved model. ``kind`` is "checkpoint" (a run folder's or a lone .pt) or an exported file's kind
    ("onnx", "aoti", "engine"); ``file`` holds the weights; ``run`` is the run folder a checkpoint belongs to."""

    given: Path
    kind: str
    file: Path
    cache_folder: Path
    run: Path | None = None

    @property
    def is_checkpoint(self) -> bool:
        return self.kind == "checkpoint"

    @cached_property
    def sha256(self) -> str:
        return self.metadata["file_sha256"] if not self.is_checkpoint else sha256_file(self.file)

    @cached_property
    def checkpoint_state(self) -> dict:
        """The whole checkpoint, loaded (and checked) once; only for a checkpoint."""
        if not self.is_checkpoint:
            raise UserError(f"{self.given} is an exported {self.kind} file, not a checkpoint")
        return load_checkpoint(self.file)

    @cached_property
    def metadata(self) -> dict[str, str]:
        """The generator-file metadata (every value a string): an exported file's own, read and checksum-checked; for
        a checkpoint, the fields an export of its EMA weights would carry."""
        if not self.is_checkpoint:
            return read_metadata(self.file)
        state = self.checkpoint_state
        info = {key: value for key, value in state.items() if not isinstance(value, dict) or key.endswith("_config")}
        return generator_metadata(info | {"path": str(self.file)}, "ema")

    @property
    def generator_config(self) -> dict:
        return json.loads(self.metadata.get("generator_config", "{}"))

    @property
    def z_dim(self) -> int:
        return int(self.metadata["z_dim"])

    def cache_file(self, name: str) -> Path:
        """Where a cache called ``name`` lives: in the cache folder for a checkpoint, beside an exported file."""
        return self.cache_folder / name if self.is_checkpoint else self.file.with_name(f"{self.file.name}.{name}")

    def to_dict(self) -> dict:
        """Plain values, for a child process (``from_dict`` rebuilds the object without resolving again)."""
        return {"given": str(self.given), "kind": self.kind, "file": str(self.file),
                "cache_folder": str(self.cache_folder), "run": str(self.run) if self.run else None}

    @classmethod
    def from_dict(cls, values: dict) -> ModelSource:
        return cls(Path(values["given"]), values["kind"], Path(values["file"]), Path(values["cache_folder"]),
                   Path(values["run"]) if values.get("run") else None)


def resolve_model(model: str | Path | ModelSource, checkpoint: str | None = None,
                  cache: str | Path | None = None) -> ModelSource:
    """``model`` (a run folder, a checkpoint .pt, or an exported .onnx, .pt2 or .engine) as a ModelSource.

    ``checkpoint`` picks another checkpoint of a run folder ("best", "latest", "step-001000"); ``cache`` is where a
    lone checkpoint's exports go (default: beside it). A ModelSource passes through unchanged."""
    if isinstance(model, ModelSource):
        if checkpoint is not None:
            raise UserError("--checkpoint picks a checkpoint of a run folder; the model is already resolved")
        return model
    path = Path(model)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if checkpoint is not None and not path.is_dir():
        raise UserError(f"--checkpoint {checkpoint} picks a checkpoint of a run folder; {path} is a file")
    if path.is_dir() or path.suffix == ".pt":
        file = find_checkpoint(path, checkpoint)
        run = path if path.is_dir() else _run_folder_of(file)
        folder = run / EXPORTS if run else Path(cache or file.parent) / EXPORTS
        return ModelSource(path, "checkpoint", file, folder, run)
    if path.suffix not in FILE_KINDS:
        raise UserError(f"{path}: not a model (a run folder, a checkpoint .pt, or an exported "
                        f"{', '.join(FILE_KINDS)} file)")
    return ModelSource(path, FILE_KINDS[path.suffix], path, path.parent)


def _run_folder_of(checkpoint: Path) -> Path | None:
    parent = checkpoint.parent
    return parent.parent if parent.name == "checkpoints" and (parent.parent / "config.json").is_file() else None
