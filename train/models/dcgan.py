"""DCGAN (Radford et al. 2016) generator and discriminator for 16, 32 and 64 pixel images."""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import dcgan_init, maybe_spectral_norm


def _num_upsamplings(resolution: int) -> int:
    return int(math.log2(resolution)) - 2  # 4x4 -> resolution, doubling each time


class DCGANGenerator(nn.Module):
    """z [N, z_dim] -> images [N, channels, resolution, resolution] in [-1, 1]."""

    def __init__(self, z_dim: int = 100, channels: int = 3, resolution: int = 64, width: int = 64):
        super().__init__()
        n = _num_upsamplings(resolution)
        hidden = width * 2 ** (n - 1)  # 512 at 64 px with width 64, as in the paper
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, hidden, 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(hidden), nn.ReLU(True)]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(hidden, hidden // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(hidden // 2), nn.ReLU(True)]
            hidden //= 2
        layers += [nn.ConvTranspose2d(hidden, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])  # [N, z, 1, 1] -> [N, C, R, R]


class DCGANDiscriminator(nn.Module):
    """images [N, channels * pack, R, R] -> logits [N]. ``batch_norm=False`` for gradient penalties."""

    def __init__(self, channels: int = 3, resolution: int = 64, width: int = 64, pack: int = 1,
                 batch_norm: bool = True, spectral_norm: bool = False):
        super().__init__()
        n = _num_upsamplings(resolution)
        hidden = width
        layers: list[nn.Module] = [maybe_spectral_norm(nn.Conv2d(channels * pack, hidden, 4, 2, 1), spectral_norm),
                                   nn.LeakyReLU(0.2, True)]
        for _ in range(n - 1):
            layers.append(maybe_spectral_norm(nn.Conv2d(hidden, hidden * 2, 4, 2, 1, bias=not batch_norm),
                                              spectral_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(hidden * 2))
            layers.append(nn.LeakyReLU(0.2, True))
            hidden *= 2
        layers.append(maybe_spectral_norm(nn.Conv2d(hidden, 1, 4, 1, 0), spectral_norm))  # [N, 1, 1, 1]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)
