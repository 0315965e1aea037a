"""What an exported generator says about itself: ONNX metadata_props, or a JSON sidecar for other formats."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

import ganforge
from ganforge.errors import UserError
from ganforge.train.models import makes_images, output_shape

SIDECAR_SUFFIX = ".json"
CHECKSUM_SUFFIX = ".sha256"  # `sha256sum -c MODEL.sha256` format, beside every exported file


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_checksum(model_path: Path) -> Path:
    """Record an exported file's sha256 beside it, so a flipped byte is caught before the model is served."""
    from ganforge.files import atomic_write_bytes

    path = Path(model_path)
    checksum = path.with_name(path.name + CHECKSUM_SUFFIX)
    atomic_write_bytes(checksum, f"{sha256_file(path)}  {path.name}\n")
    return checksum


def verified_sha256(model_path: str | Path) -> str:
    """The file's sha256, checked against its .sha256 record when there is one (exports made by ganforge)."""
    path = Path(model_path)
    digest = sha256_file(path)
    checksum = path.with_name(path.name + CHECKSUM_SUFFIX)
    if checksum.is_file():
        recorded = checksum.read_text().split()[:1]
        if recorded != [digest]:
            raise UserError(f"{path}: sha256 does not match {checksum.name} (the file changed after export: "
                            "corrupt or tampered?); export it again")
    return digest


def generator_metadata(info: dict, weights: str) -> dict[str, str]:
    """Metadata for a generator rebuilt by ``load_generator``; all values are strings (as ONNX stores them)."""
    config = info["generator_config"]
    shape = output_shape(config)
    images = makes_images(config)
    return {
        "ganforge_version": ganforge.__version__,
        "producer": "ganforge export",
        "z_dim": str(config["z_dim"]),
        "output_shape": json.dumps(list(shape)),  # per sample: [C, H, W] or [2]
        "value_range": json.dumps([-1, 1]) if images else "unbounded",
        "kind": "images" if images else "points",
        "data": info.get("train_config", {}).get("data", "unknown"),
        "training_step": str(info.get("step", 0)),
        "weights": weights,
        "checkpoint_sha256": sha256_file(info["path"]),
        "torch_version": torch.__version__.split("+")[0],
        "generator_config": json.dumps(config),
    }


def write_sidecar(model_path: Path, metadata: dict) -> Path:
    from ganforge.files import atomic_write_bytes

    sidecar = model_path.with_name(model_path.name + SIDECAR_SUFFIX)
    text = json.dumps(metadata, indent=2) + "\n"
    atomic_write_bytes(sidecar, text)
    return sidecar


def read_metadata(model_path: str | Path) -> dict[str, str]:
    """A generator file's metadata (ONNX metadata_props, else the JSON sidecar); refuses non-ganforge files.

    Adds ``file_sha256``: the file's own digest, checked against its .sha256 record (hashed once, here)."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise UserError(f"{model_path}: no such file")
    digest = verified_sha256(model_path)
    if model_path.suffix == ".onnx":
        import onnx

        try:
            model = onnx.load(str(model_path), load_external_data=False)
        except Exception as error:  # onnx raises DecodeError and friends
            raise UserError(f"{model_path}: not a readable ONNX model: {error}") from error
        metadata = {prop.key: prop.value for prop in model.metadata_props}
    else:
        sidecar = model_path.with_name(model_path.name + SIDECAR_SUFFIX)
        if not sidecar.is_file():
            raise UserError(f"{model_path}: no metadata sidecar {sidecar.name}; export it with ganforge export")
        metadata = json.loads(sidecar.read_text())
    if metadata.get("producer") != "ganforge export" or "z_dim" not in metadata:
        raise UserError(f"{model_path}: not a ganforge generator (no ganforge metadata); "
                        "export it with `ganforge export`")
    return metadata | {"file_sha256": digest}
