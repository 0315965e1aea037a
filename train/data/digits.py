"""scikit-learn's bundled 8x8 handwritten digits (1,797 real images, no download), and the stacked variant."""

from __future__ import annotations

import torch

from .base import DataSource, GeneratorStream, resize_images, to_unit_range


def load_digit_images(resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [1797, 1, resolution, resolution] images and int64 [1797] labels."""
    from sklearn.datasets import load_digits  # imported here: only digit runs pay for scikit-learn

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().mul_(255.0 / 16.0).round_().to(torch.uint8)
    return resize_images(images[:, None], resolution), torch.from_numpy(bunch.target).long()


def load_digits_source(resolution: int, seed: int) -> DataSource:
    from .base import TensorStream

    images, labels = load_digit_images(resolution)
    return DataSource(name="digits", kind="images", sample_shape=tuple(images.shape[1:]),
                      stream=TensorStream(images, seed, labels), num_samples=len(images), labels=labels,
                      extra={"detail": 8})


class StackedDigitsStream(GeneratorStream):
    """Each sample stacks 3 independently drawn digits as its 3 channels: 10^3 = 1,000 modes. Its labels are the
    three digits' ([B, 3]), for class-conditional training."""

    def __init__(self, images: torch.Tensor, seed: int, labels: torch.Tensor):
        super().__init__(seed)
        self.images, self.labels = images, labels  # uint8 [N, 1, H, W], int64 [N]

    def next_batch(self, batch_size: int) -> torch.Tensor:
        return self.next_labelled_batch(batch_size)[0]

    def next_labelled_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = self._stacks(batch_size, self.rng)
        return to_unit_range(images), labels

    def pool(self, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` stacks drawn with their own generator (the stream's position is left alone), and their digits."""
        return self._stacks(count, torch.Generator().manual_seed(seed))

    def _stacks(self, count: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        picks = torch.randint(len(self.images), (count, 3), generator=rng)
        stacked = self.images[picks.flatten(), 0].view(count, 3, *self.images.shape[-2:])
        return stacked, self.labels[picks]  # uint8 [B, 3, H, W], [B, 3]


def load_stacked_digits_source(resolution: int, seed: int) -> DataSource:
    images, labels = load_digit_images(resolution)
    return DataSource(name="stacked-digits", kind="images", sample_shape=(3, resolution, resolution),
                      stream=StackedDigitsStream(images, seed, labels), labels=labels, label_groups=3,
                      extra={"num_modes": 1000, "detail": 8})
