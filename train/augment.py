"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): the discriminator
sees real and generated images through the same kind of random, differentiable transformations, so it cannot
memorise a small training set, and the generator still learns the un-augmented distribution (its gradients flow
through the augmentation). The three policies of the paper, as in its reference code:

- ``color``: random brightness, saturation (images with 3 channels) and contrast
- ``translation``: shift by up to 1/8 of the image size, zero padding
- ``cutout``: zero out a random square of half the image size

    augment = DiffAugment(("translation", "cutout"), generator)
    logits = D(augment(images))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")


class DiffAugment:
    def __init__(self, policy: tuple[str, ...], generator: torch.Generator):
        self.policy, self.generator = policy, generator

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for name in self.policy:
            x = getattr(self, name)(x)
        return x

    def _rand(self, *shape: int, x: torch.Tensor) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator, device=x.device, dtype=torch.float32).to(x.dtype)

    def color(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x)
        x = x + (self._rand(n, 1, 1, 1, x=x) - 0.5)  # brightness
        if x.shape[1] == 3:
            mean = x.mean(dim=1, keepdim=True)
            x = (x - mean) * (self._rand(n, 1, 1, 1, x=x) * 2) + mean  # saturation
        mean = x.mean(dim=[1, 2, 3], keepdim=True)
        return (x - mean) * (self._rand(n, 1, 1, 1, x=x) + 0.5) + mean  # contrast

    def translation(self, x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
        n, _, h, w = x.shape
        sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
        ty = (self._rand(n, 1, 1, x=x).float() * (2 * sh + 1)).long().clamp_(max=2 * sh) - sh
        tx = (self._rand(n, 1, 1, x=x).float() * (2 * sw + 1)).long().clamp_(max=2 * sw) - sw
        batch, rows, cols = torch.meshgrid(torch.arange(n, device=x.device), torch.arange(h, device=x.device),
                                           torch.arange(w, device=x.device), indexing="ij")
        rows = (rows + ty + 1).clamp(0, h + 1)
        cols = (cols + tx + 1).clamp(0, w + 1)
        padded = F.pad(x, [1, 1, 1, 1])
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)

    def cutout(self, x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
        n, _, h, w = x.shape
        ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
        cy = (self._rand(n, 1, 1, x=x).float() * (h + (1 - ch % 2))).long()
        cx = (self._rand(n, 1, 1, x=x).float() * (w + (1 - cw % 2))).long()
        rows = torch.arange(h, device=x.device).view(1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, w)
        inside = ((rows - cy + ch // 2).clamp(0, h) < ch) & ((rows - cy + ch // 2) >= 0) & \
            ((cols - cx + cw // 2) >= 0) & ((cols - cx + cw // 2) < cw)
        return x * (~inside).unsqueeze(1).to(x.dtype)
