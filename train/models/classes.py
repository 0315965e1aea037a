"""The class a latent stands for, for generators of labelled data that stay seed-in, image-out.

A class-conditional generator needs a class per sample, but ganforge's contract is one latent per seed
(``ganforge/latents.py``). So the class is read from the latent itself: the first coordinate z0 ~ N(0, 1) is cut
at the normal quantiles of the class prior, so class k is drawn with the probability the training data has it,
and the rest of z varies the sample within the class. Exporters trace it as comparisons (Greater, Sub), kept in
fp32 in fp16 and int8 exports (``export/onnx.latent_class_nodes``) and in TensorRT fp16 engines: every backend
computes the same class for the same seed, and no caller needs to know that the model is conditional.

    classes = LatentClasses([0.1] * 10)
    onehot = classes(z)         # [N, 10] float, one 1 per row
    labels = classes.labels(z)  # [N] int64

With ``groups=G`` a sample has G independent classes, read from z0 .. z(G-1) (stacked digits: one digit per
channel); the one-hots sit side by side ([N, G * K]) and ``labels`` is [N, G].
"""

from __future__ import annotations

import torch
from torch import nn

OUTSIDE = 1e4  # stands for -/+ infinity at the ends; finite so fp16 exports keep it (fp16 max is 65504)


class LatentClasses(nn.Module):
    def __init__(self, prior: list[float], groups: int = 1):
        super().__init__()
        probabilities = torch.tensor(prior, dtype=torch.float64)
        if probabilities.ndim != 1 or len(probabilities) < 2 or (probabilities <= 0).any():
            raise ValueError(f"a class prior needs two or more positive probabilities, got {prior}")
        cumulative = (probabilities / probabilities.sum()).cumsum(0)[:-1]
        # rounded to bf16 (whose values fp16 and fp32 hold exactly): every precision cuts at the same places, and
        # the shares move by less than 0.2% of a class
        cuts = torch.special.ndtri(cumulative).clamp(-OUTSIDE / 2, OUTSIDE / 2).to(torch.bfloat16).float()
        edges = torch.cat([torch.tensor([-OUTSIDE]), cuts, torch.tensor([OUTSIDE])])
        self.register_buffer("edges", edges, persistent=False)  # rebuilt from the prior in the config
        if groups < 1:
            raise ValueError(f"groups must be 1 or more, got {groups}")
        self.num_classes, self.groups = len(prior), groups

    @property
    def width(self) -> int:
        """How many inputs the one-hots add beside z."""
        return self.groups * self.num_classes

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, z_dim] -> one-hots [N, G * K] in z's dtype: group g has its 1 where edges[k] < z_g <= edges[k+1]."""
        # compared in fp32 whatever the model runs in, so that half-precision backends cut at the same places
        above = (z[:, : self.groups, None].float() > self.edges.float()).to(z.dtype)  # [N, G, K+1]: 1 per edge below
        return (above[..., :-1] - above[..., 1:]).flatten(1)

    def labels(self, z: torch.Tensor) -> torch.Tensor:
        """[N] int64 class indices ([N, G] with several groups)."""
        labels = self(z).view(len(z), self.groups, self.num_classes).argmax(dim=2)
        return labels[:, 0] if self.groups == 1 else labels


def projection_logits(out: torch.Tensor, labels: torch.Tensor | None, num_classes: int, groups: int) -> torch.Tensor:
    """A projection discriminator's logits (Miyato & Koyama 2018) from its last layer's [N, 1 + groups * K] outputs:
    the shared one plus, per group, the one of the sample's class ([N] or [N, groups] labels)."""
    if not num_classes:
        return out[:, 0]
    if labels is None:
        raise ValueError("a class-conditional discriminator needs the samples' labels")
    per_class = out[:, 1:].view(len(out), groups, num_classes)
    return out[:, 0] + per_class.gather(2, labels.view(len(out), groups, 1)).sum(dim=(1, 2))


def class_prior(labels: torch.Tensor) -> list[float]:
    """The share of each class 0..max(labels) in ``labels`` (every class must occur)."""
    if len(labels) == 0 or labels.min() < 0:
        raise ValueError("labels must be non-negative class indices")
    counts = torch.bincount(labels.long().flatten())
    if (counts == 0).any():
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"labels {missing} never occur")
    if len(counts) < 2:
        raise ValueError("a class-conditional model needs two or more classes")
    return (counts.double() / counts.sum()).tolist()


def class_ranges(prior: list[float], groups: int, chosen: tuple[int, ...]) -> tuple[tuple[float, float], ...]:
    """For class ``chosen[g]`` of each group g, the interval (low, high] of z_g that the generator reads as it: the
    very edges LatentClasses compares with (``ganforge.latents.LatentControls`` moves a seed's z_g into it)."""
    edges = LatentClasses(prior, groups).edges.tolist()
    return tuple((edges[k], edges[k + 1]) for k in chosen)
