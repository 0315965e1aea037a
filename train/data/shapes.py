"""Procedurally rendered coloured shapes with known factors (shape, colour, size, position).

A fixed pool rendered once from a fixed seed, so every run sees the same data set. Rendered at twice the
resolution and average-pooled, which antialiases the edges.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import DataSource, TensorStream, check_resolution

SHAPES = ("circle", "square", "triangle")
COLOURS = torch.tensor([[230, 60, 60], [60, 200, 80], [70, 110, 240], [240, 210, 60], [200, 80, 220],
                        [60, 210, 220]], dtype=torch.float32) / 255.0
POOL_SIZE = 6000
POOL_SEED = 20181


def render_shapes(shape: torch.Tensor, colour: torch.Tensor, centre: torch.Tensor, radius: torch.Tensor,
                  resolution: int) -> torch.Tensor:
    """Factors for n samples -> uint8 [n, 3, resolution, resolution]."""
    size = 2 * resolution
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    v, u = torch.meshgrid(coords, coords, indexing="ij")  # [S, S], v grows downwards
    du = u[None] - centre[:, 0, None, None]  # [n, S, S]
    dv = v[None] - centre[:, 1, None, None]
    r = radius[:, None, None]
    circle = du.square() + dv.square() <= r.square()
    square = torch.maximum(du.abs(), dv.abs()) <= 0.85 * r
    # apex at the top, base at the bottom: the half-width grows linearly from apex to base
    triangle = (dv >= -r) & (dv <= 0.8 * r) & (du.abs() <= (dv + r) * 0.6)
    masks = torch.stack([circle, square, triangle], dim=1)  # [n, 3 shapes, S, S]
    mask = masks[torch.arange(len(shape)), shape].float()  # [n, S, S]
    mask = F.avg_pool2d(mask[:, None], 2)  # [n, 1, R, R]
    images = mask * COLOURS[colour][:, :, None, None]  # [n, 3, R, R]
    return images.mul_(255).round_().to(torch.uint8)


def load_shapes_source(resolution: int, seed: int, pool_size: int = POOL_SIZE) -> DataSource:
    check_resolution(resolution, maximum=64)
    rng = torch.Generator().manual_seed(POOL_SEED)
    shape = torch.randint(len(SHAPES), (pool_size,), generator=rng)
    colour = torch.randint(len(COLOURS), (pool_size,), generator=rng)
    radius = 0.15 + 0.15 * torch.rand(pool_size, generator=rng)
    centre = radius[:, None] + (1 - 2 * radius[:, None]) * torch.rand(pool_size, 2, generator=rng)
    images = torch.cat([render_shapes(*factors, resolution) for factors in
                        zip(shape.split(500), colour.split(500), centre.split(500), radius.split(500))])
    factors = {"shape": shape, "colour": colour, "radius": radius, "centre": centre}
    labels = shape * len(COLOURS) + colour  # 18 classes: each shape in each colour
    return DataSource(name="shapes", kind="images", sample_shape=(3, resolution, resolution),
                      stream=TensorStream(images, seed, labels), num_samples=pool_size, labels=labels,
                      extra={"factors": factors})
