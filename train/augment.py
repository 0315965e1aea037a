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
    """``probability``: a tensor holding the share of samples augmented (adaptive augmentation); None: every one."""

    def __init__(self, policy: tuple[str, ...], generator: torch.Generator, probability: torch.Tensor | None = None):
        self.policy, self.generator, self.probability = policy, generator, probability

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        augmented = x
        for name in self.policy:
            augmented = getattr(self, name)(augmented)
        if self.probability is None:
            return augmented
        chosen = torch.rand(len(x), generator=self.generator, device=x.device) < self.probability  # per sample
        return torch.where(chosen.view(-1, *[1] * (x.ndim - 1)), augmented, x)


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


class AdaptiveStrength:
    """ADA's overfitting heuristic (Karras et al. 2020) driving DiffAugment's probability p: every ``interval`` steps
    r = E[sign(D(real))] over them; p rises when r is above ``target`` (D is sure of the training images: it is
    overfitting) and falls below it, at a speed that could take p from 0 to 1 in ``speed_images`` images. Every
    value stays on the device (no step waits for it), and all of it is checkpointed."""

    def __init__(self, target: float, batch_size: int, device: torch.device, interval: int = 4,
                 speed_images: int = 100_000):
        self.target, self.interval = target, interval
        self.step_size = batch_size * interval / speed_images
        self.probability = torch.zeros((), device=device)
        self.signs = torch.zeros((), device=device)  # sum over this interval's steps of each step's mean sign

    def observe(self, real_logits: torch.Tensor) -> None:
        """Once per step: every step sees as many real images, so the mean of the steps' means is r."""
        self.signs += real_logits.detach().float().sign().mean()

    def update(self, step: int) -> None:
        if step % self.interval:
            return
        heuristic = self.signs / self.interval
        self.probability.add_(torch.sign(heuristic - self.target) * self.step_size).clamp_(0, 1)
        self.signs.zero_()

    def state_dict(self) -> dict:
        return {"probability": self.probability.clone(), "signs": self.signs.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.probability.copy_(state["probability"])
        self.signs.copy_(state["signs"])
