"""GAN losses on discriminator logits, and the gradient penalties (computed in fp32, outside autocast)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


@dataclass(frozen=True)
class GANLoss:
    discriminator: Callable[[Tensor, Tensor], Tensor]  # (real_logits, fake_logits) -> loss
    generator: Callable[[Tensor, Tensor | None], Tensor]  # (fake_logits, real_logits or None) -> loss
    relativistic: bool = False  # G's loss needs D's logits of real data too


# Non-saturating loss (Goodfellow et al. 2014): the classic DCGAN's BCE, written with softplus.
NON_SATURATING = GANLoss(
    discriminator=lambda real, fake: F.softplus(-real).mean() + F.softplus(fake).mean(),
    generator=lambda fake, real: F.softplus(-fake).mean(),
)
HINGE = GANLoss(
    discriminator=lambda real, fake: F.relu(1 - real).mean() + F.relu(1 + fake).mean(),
    generator=lambda fake, real: -fake.mean(),
)
WASSERSTEIN = GANLoss(
    discriminator=lambda real, fake: fake.mean() - real.mean(),
    generator=lambda fake, real: -fake.mean(),
)
# Relativistic pairing GAN (Jolicoeur-Martineau 2019; R3GAN's loss): each real sample is paired with a fake one and D
# learns to rank the real above it; G the reverse. With R1 and R2 it converges locally (Huang et al. 2024).
RPGAN = GANLoss(
    discriminator=lambda real, fake: F.softplus(fake - real).mean(),
    generator=lambda fake, real: F.softplus(real - fake).mean(),
    relativistic=True,
)
LOSSES = {"ns": NON_SATURATING, "hinge": HINGE, "wgan-gp": WASSERSTEIN, "rpgan": RPGAN}


def _input_gradients(discriminator: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    x = x.detach().float().requires_grad_(True)
    logits = discriminator(x)
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    return grad.flatten(1)  # [B, numel]


def gradient_penalty(discriminator: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor,
                     alpha: Tensor) -> Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (||grad D(x_hat)|| - 1)^2 on random interpolates x_hat."""
    alpha = alpha.view(-1, *([1] * (real.ndim - 1)))
    mixed = torch.lerp(real.detach().float(), fake.detach().float(), alpha)
    return (_input_gradients(discriminator, mixed).norm(dim=1) - 1).square().mean()


def r1_penalty(discriminator: Callable[[Tensor], Tensor], samples: Tensor) -> Tensor:
    """R1 (Mescheder et al. 2018): ||grad D(x)||^2 on real data, or R2 on generated data; the caller multiplies by
    gamma / 2."""
    return _input_gradients(discriminator, samples).square().sum(dim=1).mean()
