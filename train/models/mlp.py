"""Multi-layer perceptrons: the standard models of the 2D mixture experiments (also usable on small images)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import blocks_of, maybe_spectral_norm


class MLPGenerator(nn.Module):
    def __init__(self, z_dim: int, out_shape: tuple[int, ...], width: int = 256, depth: int = 3,
                 tanh: bool = False):
        super().__init__()
        self.out_shape = tuple(out_shape)
        layers: list[nn.Module] = []
        in_features = z_dim
        for _ in range(depth):
            layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
            in_features = width
        layers.append(nn.Linear(in_features, math.prod(self.out_shape)))
        if tanh:  # images live in [-1, 1]; 2D points are unbounded
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(-1, *self.out_shape)  # [N, *out_shape]


class MLPDiscriminator(nn.Module):
    def __init__(self, in_shape: tuple[int, ...], pack: int = 1, width: int = 256, depth: int = 3,
                 spectral_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = []
        in_features = math.prod(in_shape) * pack
        for _ in range(depth):
            layers += [maybe_spectral_norm(nn.Linear(in_features, width), spectral_norm), nn.LeakyReLU(0.2, True)]
            in_features = width
        layers.append(maybe_spectral_norm(nn.Linear(in_features, 1), spectral_norm))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1)).view(-1)  # [N] logits

    def blocks(self) -> list[nn.Module]:
        return blocks_of(self.net)
