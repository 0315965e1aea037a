"""The standard 2D mode-collapse mixtures (PacGAN, Lin et al. 2018): 8 Gaussians on a ring, 25 on a grid."""

from __future__ import annotations

import math

import torch

from .base import DataSource, GeneratorStream

RING_SIGMA = 0.01
GRID_SIGMA = 0.05


def ring_modes() -> torch.Tensor:
    # 2*pi*arange(8)/8: linspace with its endpoint would repeat the first mode and give only 7.
    angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    return torch.stack([angles.cos(), angles.sin()], dim=1).float()  # [8, 2]


def grid_modes() -> torch.Tensor:
    values = torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0])
    return torch.cartesian_prod(values, values)  # [25, 2]


class MixtureStream(GeneratorStream):
    """Equal-weight isotropic Gaussians around ``modes``."""

    def __init__(self, modes: torch.Tensor, sigma: float, seed: int):
        super().__init__(seed)
        self.modes, self.sigma = modes, sigma

    def next_batch(self, batch_size: int) -> torch.Tensor:
        which = torch.randint(len(self.modes), (batch_size,), generator=self.rng)
        noise = torch.randn(batch_size, 2, generator=self.rng)
        return self.modes[which] + self.sigma * noise  # [B, 2]


def load_mixture(name: str, seed: int) -> DataSource:
    modes, sigma = (ring_modes(), RING_SIGMA) if name == "ring" else (grid_modes(), GRID_SIGMA)
    return DataSource(name=name, kind="points", sample_shape=(2,), stream=MixtureStream(modes, sigma, seed),
                      modes=modes, mode_sigma=sigma)
