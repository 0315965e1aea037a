"""A modern residual generator and discriminator for 16 to 1,024 pixel images, from standard ops only.

The design follows what R3GAN (Huang et al. 2024, "The GAN is dead; long live the GAN!") showed to be enough: plain
residual stages with no normalisation layers, trained with the relativistic pairing loss and R1 + R2 penalties
(``losses.RPGAN``). Written here from the paper's description:

- a stage per resolution (4, 8, ... R pixels), each ``blocks`` residual blocks
  ``x + conv1x1(act(conv3x3(act(conv1x1(x)))))``. R3GAN's blocks are inverted bottlenecks with grouped 3x3
  convolutions (twice the channels inside, ConvNeXt-style); on a CPU oneDNN's grouped convolutions train slowly,
  and the same block at one width with a dense 3x3 trained a 32 px step 1.15x as fast (269 against 308 ms, 1 thread,
  ``benchmarks/results/residual_blocks.json``), so the blocks keep one width;
- between stages a transition: a 1x1 convolution that changes the width and bilinear x2 upsampling in G (average
  pooling and the 1x1 convolution in D; the two commute, so each runs on the fewer channels); channels halve as
  the resolution doubles, from ``width`` at full size up to 8 x ``width``;
- no normalisation: each branch's last convolution starts at zero and the others are scaled by L^-1/4 (L = blocks
  in the network, Fix-up initialisation), so every block starts as the identity and training stays stable;
- G: z (with the class one-hots of ``LatentClasses``, as the DCGAN) -> linear -> 4x4 -> stages -> 1x1 -> tanh;
  D: 1x1 -> stages -> flatten -> linear -> the projection logits of ``classes.projection_logits``;
- ``full_size_blocks`` sets the blocks of the full-size stage apart from the others; with none there, the 1x1
  convolutions at full size become 3x3 (G draws the image from the upsampled features, D reads it), as the DCGAN
  works at full size with one layer each;
- ``batch_norm`` (off by default, by measurement: docs/quality.md) normalises each block's two inner activations
  over the batch, and G's 4x4 basis, as SNGAN's residual G and the DCGAN do; the ONNX export folds the blocks'
  into their convolutions (the basis keeps one BatchNormalization node, a standard op).

Every op (Linear, Conv2d, BatchNorm, bilinear Resize, LeakyReLU, Tanh) exports to ONNX, OpenVINO, AOTInductor and
TensorRT without custom layers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .classes import LatentClasses, projection_logits

EXPANSION = 1  # channels inside a block, per channel outside
SLOPE = 0.2  # LeakyReLU


def stage_channels(resolution: int, width: int) -> dict[int, int]:
    """Channels at each stage's resolution: ``width`` at full size, doubling as the size halves, at most 8x."""
    sizes = [4 * 2 ** i for i in range(int(math.log2(resolution)) - 1)]
    return {size: min(width * resolution // size, 8 * width) for size in sizes}


def _conv(in_channels: int, out_channels: int, kernel: int = 1, scale: float = 1.0, bias: bool = True,
          linear: bool = False) -> nn.Conv2d:
    """A convolution with He initialisation (for a LeakyReLU after it, or none: ``linear``, which keeps the variance
    of the residual stream), scaled by ``scale`` (0: starts at zero)."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=bias)
    nn.init.kaiming_normal_(conv.weight, a=SLOPE, nonlinearity="linear" if linear else "leaky_relu")
    with torch.no_grad():
        conv.weight.mul_(scale)
    if bias:
        nn.init.zeros_(conv.bias)
    return conv


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()  # Identity: no weights, the same state keys


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, total_blocks: int, batch_norm: bool = False):
        super().__init__()
        hidden = channels * EXPANSION
        scale = total_blocks ** -0.25  # Fix-up: L^(-1/(2m-2)) with m = 3 layers per branch
        self.expand = _conv(channels, hidden, scale=scale)
        self.spatial = _conv(hidden, hidden, 3, scale=scale)
        self.project = _conv(hidden, channels, scale=0.0, bias=False)
        self.norm_expand, self.norm_spatial = _norm(hidden, batch_norm), _norm(hidden, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch = F.leaky_relu(self.norm_expand(self.expand(x)), SLOPE)
        branch = F.leaky_relu(self.norm_spatial(self.spatial(branch)), SLOPE)
        return x + self.project(branch)


def _stage(channels: int, blocks: int, total_blocks: int, batch_norm: bool = False) -> nn.Sequential:
    return nn.Sequential(*(ResidualBlock(channels, total_blocks, batch_norm) for _ in range(blocks)))


def _stages(widths: dict[int, int], sizes: list[int], blocks: int, top: int, batch_norm: bool) -> nn.ModuleList:
    """A stage per size in ``sizes`` order, ``blocks`` each but ``top`` at full size (G and D build theirs alike)."""
    resolution, total = max(widths), blocks * (len(sizes) - 1) + top
    return nn.ModuleList(_stage(widths[size], top if size == resolution else blocks, total, batch_norm)
                         for size in sizes)


class ResidualGenerator(nn.Module):
    """z [N, z_dim] -> images [N, channels, resolution, resolution] in [-1, 1]; ``class_prior``: conditional."""

    memory_format = torch.channels_last  # oneDNN's convolutions run about 1.3x as fast in it on CPUs

    def __init__(self, z_dim: int = 64, channels: int = 3, resolution: int = 32, width: int = 32, blocks: int = 1,
                 class_prior: list[float] | None = None, class_groups: int = 1, full_size_blocks: int | None = None,
                 batch_norm: bool = False):
        super().__init__()
        self.classes = LatentClasses(class_prior, class_groups) if class_prior else None
        widths = stage_channels(resolution, width)
        sizes = list(widths)
        self.basis = nn.Linear(z_dim + (self.classes.width if self.classes else 0), widths[4] * 16)
        nn.init.kaiming_normal_(self.basis.weight, a=SLOPE, nonlinearity="leaky_relu")
        nn.init.zeros_(self.basis.bias)
        self.basis_norm = _norm(widths[4], batch_norm)
        top = blocks if full_size_blocks is None else full_size_blocks
        self.stages = _stages(widths, sizes, blocks, top, batch_norm)
        self.transitions = nn.ModuleList(_conv(widths[low], widths[high], linear=True)
                                         for low, high in zip(sizes, sizes[1:]))
        # scaled to start short of tanh's tails; without blocks at full size, a 3x3 convolution draws the image from
        # the upsampled features
        self.to_image = _conv(widths[resolution], channels, 1 if top else 3, linear=True, scale=0.5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.classes is not None:
            z = torch.cat([z, self.classes(z)], dim=1)
        x = self.basis(z).unflatten(1, (-1, 4, 4))  # len(z) would fix the exported batch
        x = F.leaky_relu(self.basis_norm(x), SLOPE)
        x = self.stages[0](x)
        for transition, stage in zip(self.transitions, self.stages[1:]):
            # the 1x1 convolution and the resampling commute (both linear): each runs on the fewer channels
            x = stage(F.interpolate(transition(x), scale_factor=2.0, mode="bilinear", align_corners=False))
        return torch.tanh(self.to_image(x))


class ResidualDiscriminator(nn.Module):
    """images [N, channels * pack, R, R] (and labels [N], or [N, class_groups], with ``num_classes``) -> logits [N]."""

    memory_format = torch.channels_last  # oneDNN's convolutions run about 1.3x as fast in it on CPUs

    def __init__(self, channels: int = 3, resolution: int = 32, width: int = 32, blocks: int = 1, pack: int = 1,
                 num_classes: int = 0, class_groups: int = 1, full_size_blocks: int | None = None,
                 batch_norm: bool = False):
        super().__init__()
        widths = stage_channels(resolution, width)
        sizes = list(reversed(widths))  # R, R/2, ... 4
        top = blocks if full_size_blocks is None else full_size_blocks
        self.from_image = _conv(channels * pack, widths[resolution], 1 if top else 3)  # 3x3 where no block follows
        self.stages = _stages(widths, sizes, blocks, top, batch_norm)
        self.transitions = nn.ModuleList(_conv(widths[high], widths[low], linear=True)
                                         for high, low in zip(sizes, sizes[1:]))
        self.hidden = nn.Linear(widths[4] * 16, widths[4])
        self.out = nn.Linear(widths[4], 1 + num_classes * class_groups)  # shared logit, then one per class of a group
        for linear in (self.hidden, self.out):
            nn.init.kaiming_normal_(linear.weight, a=SLOPE, nonlinearity="leaky_relu")
            nn.init.zeros_(linear.bias)
        self.num_classes, self.class_groups = num_classes, class_groups

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return projection_logits(self.out(self.features(x)), labels, self.num_classes, self.class_groups)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, F]: what the last layer reads, the same for every class (pseudo-classes re-clustered on it)."""
        x = F.leaky_relu(self.from_image(x), SLOPE)
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index < len(self.transitions):
                x = self.transitions[index](F.avg_pool2d(x, 2))
        return F.leaky_relu(self.hidden(x.flatten(1)), SLOPE)

    def blocks(self) -> list[nn.Module]:
        """From the image side: the input layer with the first stage, each transition with its stage, then the
        head (for ``--freeze-d``)."""
        first = [nn.ModuleList([self.from_image, self.stages[0]])]
        rest = [nn.ModuleList([t, stage]) for t, stage in zip(self.transitions, self.stages[1:])]
        return [*first, *rest, nn.ModuleList([self.hidden, self.out])]
