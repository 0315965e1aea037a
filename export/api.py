"""`export()`: checkpoint -> verified model file. Written to a temp file, renamed into place only once verified."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ganforge.errors import UserError
from ganforge.files import temp_path
from ganforge.train.checkpoint import load_generator
from ganforge.train.models import output_shape

from . import verify as verification
from .metadata import generator_metadata, write_checksum, write_sidecar

FORMATS = {".onnx": "onnx", ".pt2": "aoti"}
PRECISIONS = {"onnx": ("fp32", "fp16", "int8"), "aoti": ("fp32",)}
# the most values one verification batch may hold: the largest batch is verified up to batch 1,024 of 3 x 64 x 64
# images (the reference and the candidate each hold that output and the activations behind it); at 256 px that is
# batch 64, at 1,024 px batch 4, so verifying a large generator does not run the machine out of memory
VERIFY_VALUES = 1024 * 3 * 64 * 64


@dataclass(frozen=True)
class ExportConfig:
    """Example: ``export(ExportConfig(source="runs/00000-digits-dcgan", out="g.onnx", precision="fp16"))``."""

    source: str
    out: str
    format: str | None = None  # None: from the suffix of `out`
    precision: str = "fp32"
    max_batch: int = 1024
    opset: int | None = None
    weights: str = "ema"
    verify: bool = True
    verify_batches: tuple[int, ...] = (1, 3, 64)
    device: str = "cpu"  # AOTInductor compiles for one device (cpu or cuda); ONNX is device-neutral

    def __post_init__(self) -> None:
        fmt = self.resolved_format
        if self.precision not in PRECISIONS[fmt]:
            raise UserError(f"--precision {self.precision} is not available for {fmt} "
                            f"(choose from {', '.join(PRECISIONS[fmt])})")
        if self.max_batch < 1:
            raise UserError(f"--max-batch must be at least 1, got {self.max_batch}")
        if self.device != "cpu" and fmt != "aoti":
            raise UserError(f"--device {self.device} applies to AOTInductor packages only (ONNX is device-neutral)")
        if self.weights not in ("ema", "raw"):
            raise UserError(f"--weights must be ema or raw, got {self.weights!r}")
        parent = Path(self.out).expanduser().resolve().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise UserError(f"--out {self.out}: folder {parent} does not exist or is not writable")

    @property
    def resolved_format(self) -> str:
        if self.format:
            if self.format not in PRECISIONS:
                raise UserError(f"unknown --format {self.format!r} (choose onnx or aoti)")
            return self.format
        suffix = Path(self.out).suffix
        if suffix not in FORMATS:
            raise UserError(f"cannot tell the format from {self.out!r}: use a .onnx or .pt2 name, or --format")
        return FORMATS[suffix]

    def batch_sizes(self, values_per_sample: int) -> list[int]:
        """The batches verified: ``verify_batches`` and the largest batch, both within ``max_batch`` and the memory
        bound ``VERIFY_VALUES`` (for a sample of ``values_per_sample`` output values)."""
        largest = min(self.max_batch, max(1, VERIFY_VALUES // values_per_sample))
        return sorted({b for b in (*self.verify_batches, largest) if b <= largest})


@dataclass
class ExportResult:
    path: Path
    format: str
    precision: str
    seconds: float
    metadata: dict
    comparisons: list = field(default_factory=list)


def export(config: ExportConfig) -> ExportResult:
    started = time.perf_counter()
    fmt, out = config.resolved_format, Path(config.out).expanduser()
    generator, info = load_generator(config.source, config.weights)
    z_dim = info["generator_config"]["z_dim"]
    metadata = generator_metadata(info, config.weights) | {"precision": config.precision,
                                                            "max_batch": str(config.max_batch)}
    tmp = temp_path(out, out.suffix)
    try:
        if fmt == "onnx":
            candidate = _export_onnx(generator, z_dim, tmp, config)
        else:
            candidate = _export_aoti(generator, z_dim, tmp, config)
            metadata["device"] = config.device
        comparisons = []
        if config.verify:
            values = math.prod(output_shape(info["generator_config"]))
            comparisons = _verify(generator, candidate, z_dim, config, config.batch_sizes(values))
            metadata["verified_max_abs_error"] = f"{max(c.max_abs for c in comparisons):.6g}"
            metadata["verified_min_psnr_db"] = f"{min(c.psnr_db for c in comparisons):.2f}"
        if fmt == "onnx":
            _embed_onnx_metadata(tmp, metadata)
        else:
            write_sidecar(out, metadata)
        os.replace(tmp, out)
        write_checksum(out)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportResult(out, fmt, config.precision, time.perf_counter() - started, metadata, comparisons)


def _export_onnx(generator, z_dim: int, tmp: Path, config: ExportConfig):
    from .onnx import INPUT_NAME, convert_fp16, convert_int8, export_onnx, onnx_session

    if config.precision == "fp32":
        export_onnx(generator, z_dim, tmp, config.max_batch, config.opset)
    else:
        fp32 = tmp.with_name(tmp.name + ".fp32.onnx")
        try:
            export_onnx(generator, z_dim, fp32, config.max_batch, config.opset)
            if config.precision == "fp16":
                convert_fp16(fp32, tmp)
            else:
                convert_int8(fp32, tmp, z_dim)
        finally:
            fp32.unlink(missing_ok=True)
    session = onnx_session(tmp)
    return lambda z: session.run(None, {INPUT_NAME: z})[0]


def _export_aoti(generator, z_dim: int, tmp: Path, config: ExportConfig):
    from ganforge.train.precision import resolve_device, strict_fp32

    from .aoti import export_aoti, load_aoti

    device = resolve_device(config.device)
    if device.type == "cuda":
        strict_fp32()
    export_aoti(generator.to(device), z_dim, tmp, config.max_batch)
    generator.cpu()  # the reference stays fp32 on the CPU
    package = load_aoti(tmp)
    return lambda z: package(torch.from_numpy(z).to(device)).cpu().numpy()


def _verify(generator, candidate, z_dim: int, config: ExportConfig, batch_sizes: list[int]) -> list:
    with torch.no_grad():
        reference = lambda z: generator(torch.from_numpy(z)).numpy()  # noqa: E731
        comparisons = verification.verify(reference, candidate, z_dim, batch_sizes)
    problems = verification.failures(comparisons, config.precision)
    if problems:
        raise UserError(f"verification failed, nothing written to {config.out}: {'; '.join(problems)}")
    return comparisons


def _embed_onnx_metadata(path: Path, metadata: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=str(value))
    model.producer_name = "ganforge"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def describe(result: ExportResult) -> str:
    lines = [f"exported {result.format} {result.precision} -> {result.path} in {result.seconds:.1f}s"]
    for c in result.comparisons:
        lines.append(f"  verify batch {c.batch_size:>5}: max abs {c.max_abs:.3g}  mean abs {c.mean_abs:.3g}  "
                     f"PSNR {c.psnr_db:.1f} dB")
    if not result.comparisons:
        lines.append("  not verified (--no-verify)")
    return "\n".join(lines)


def to_json(result: ExportResult) -> str:
    return json.dumps({"path": str(result.path), "format": result.format, "precision": result.precision,
                       "seconds": result.seconds, "comparisons": [c.as_dict() for c in result.comparisons],
                       "metadata": result.metadata}, default=float)


__all__ = ["ExportConfig", "ExportResult", "describe", "export"]
