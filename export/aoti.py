"""PyTorch generator -> AOTInductor package (.pt2) with a dynamic batch, loadable without Python model code."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


def export_aoti(generator: torch.nn.Module, z_dim: int, path: Path, max_batch: int) -> None:
    generator = generator.eval()
    batch = torch.export.Dim("batch", min=1, max=max(max_batch, 2))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        example = torch.randn(2, z_dim, device=next(generator.parameters()).device)
        program = torch.export.export(generator, (example,), dynamic_shapes=({0: batch},))
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))


def load_aoti(path: str | Path):
    """A callable z -> images on the device the package was compiled for."""
    return torch._inductor.aoti_load_package(str(path))
