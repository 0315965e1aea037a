"""DCGAN (Radford et al. 2016) generator and discriminator for 16, 32 and 64 pixel images.

Both can be class-conditional for labelled data: G reads its class from the latent (``classes.LatentClasses``)
and gets it as a one-hot beside z (Mirza & Osindero 2014); D is a projection discriminator (Miyato & Koyama
2018): its last layer has one output shared by all classes plus one per class, and the logit of a sample is the
shared one plus its class's. With several classes per sample (``class_groups``: stacked digits, a digit per
channel), G reads one class per group and D adds one class logit per group.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .classes import LatentClasses, projection_logits
from .layers import blocks_of, dcgan_init, maybe_spectral_norm


def _num_upsamplings(resolution: int) -> int:
    return int(math.log2(resolution)) - 2  # 4x4 -> resolution, doubling each time


class DCGANGenerator(nn.Module):
    """z [N, z_dim] -> images [N, channels, resolution, resolution] in [-1, 1]; ``class_prior``: conditional."""

    def __init__(self, z_dim: int = 100, channels: int = 3, resolution: int = 64, width: int = 64,
                 class_prior: list[float] | None = None, class_groups: int = 1):
        super().__init__()
        self.classes = LatentClasses(class_prior, class_groups) if class_prior else None
        inputs = z_dim + (self.classes.width if self.classes else 0)
        n = _num_upsamplings(resolution)
        hidden = width * 2 ** (n - 1)  # 512 at 64 px with width 64, as in the paper
        layers: list[nn.Module] = [nn.ConvTranspose2d(inputs, hidden, 4, 1, 0, bias=False),
                                   nn.BatchNorm2d(hidden), nn.ReLU(True)]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(hidden, hidden // 2, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(hidden // 2), nn.ReLU(True)]
            hidden //= 2
        layers += [nn.ConvTranspose2d(hidden, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.classes is not None:
            z = torch.cat([z, self.classes(z)], dim=1)
        return self.net(z[:, :, None, None])  # [N, z, 1, 1] -> [N, C, R, R]


class DCGANDiscriminator(nn.Module):
    """images [N, channels * pack, R, R] (and labels [N], or [N, class_groups], with ``num_classes``) -> logits [N].
    ``batch_norm=False`` for gradient penalties."""

    def __init__(self, channels: int = 3, resolution: int = 64, width: int = 64, pack: int = 1,
                 batch_norm: bool = True, spectral_norm: bool = False, num_classes: int = 0, class_groups: int = 1):
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
        outputs = 1 + num_classes * class_groups  # the shared logit, then one per class of each group
        layers.append(maybe_spectral_norm(nn.Conv2d(hidden, outputs, 4, 1, 0), spectral_norm))  # [N, out, 1, 1]
        self.net = nn.Sequential(*layers)
        self.num_classes, self.class_groups = num_classes, class_groups
        self.apply(dcgan_init)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return projection_logits(self.net(x).flatten(1), labels, self.num_classes, self.class_groups)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, F]: what the last layer reads, the same for every class (pseudo-classes re-clustered on it)."""
        return self.net[:-1](x).flatten(1)

    def blocks(self) -> list[nn.Module]:
        """From the image side: each convolution with its BatchNorm and activation (for ``--freeze-d``)."""
        return blocks_of(self.net)
