"""What every data source hands the training loop: a resumable stream of batches.

Images are kept in memory as uint8 ``[N, C, H, W]`` and turned into float32 in [-1, 1] one batch at a time;
2D points are float32 ``[N, 2]``. A stream's ``state_dict`` is its exact position, so a resumed run sees the
same batches as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F

from ganforge.errors import UserError


class BatchStream(Protocol):
    def next_batch(self, batch_size: int) -> torch.Tensor: ...
    def pool(self, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class DataSource:
    """A loaded data set: its stream of batches plus what the rest of the pipeline needs to know about it."""

    name: str
    kind: str  # "points" or "images"
    sample_shape: tuple[int, ...]  # (2,) or (C, H, W)
    stream: BatchStream
    num_samples: int | None = None  # None for sources that generate without end
    labels: torch.Tensor | None = None  # int64 [N]: the class of each stored image (the stream draws from these)
    label_groups: int = 1  # labels per sample: stacked digits have one per channel
    modes: torch.Tensor | None = None  # 2D mixtures: mode centres [K, 2]
    mode_sigma: float | None = None
    extra: dict = field(default_factory=dict)  # e.g. "detail": the resolution its content really has

    def without_labels(self) -> DataSource:
        """The same data as training sees it under ``--labels ignore``: no labels to condition on (the stream keeps
        them, to measure how pure pseudo-classes are; evaluation keeps the labelled source)."""
        return dataclasses.replace(self, labels=None, label_groups=1)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.float().div_(127.5).sub_(1.0)


def shuffled_order(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=generator)


POOL_BYTES = 256 * 2**20  # a folder's clustering pool: 20,000 images at 64 px, 5,461 at 128 px


class TensorStream:
    """Epoch-shuffled batches from fixed uint8 images (and their labels); the position is (epoch, cursor).

    ``images``: a uint8 [N, C, H, W] tensor, or anything indexed like one (a folder's ``CachedImages``).
    ``mirror``: x-flips as more data, as StyleGAN's ``--mirror``: the stream draws from 2N images, the N stored ones
    and their mirror images, so the order and a resumed position stay a function of the seed alone.
    """

    def __init__(self, images, seed: int, labels: torch.Tensor | None = None, mirror: bool = False):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError("TensorStream wants uint8 [N, C, H, W] images")
        if labels is not None and labels.shape != (len(images),):
            raise UserError(f"labels of shape {list(labels.shape)} for {len(images)} images: want one label per image")
        self.images, self.labels, self.seed, self.mirror = images, labels, seed, mirror
        self.size = len(images) * (2 if mirror else 1)
        self.epoch, self.cursor = 0, 0
        self._order = shuffled_order(self.size, seed, 0)

    def next_batch(self, batch_size: int) -> torch.Tensor:
        return to_unit_range(self._images(self._next_indices(batch_size)))

    def pool(self, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 images to fit pseudo-classes on, and their labels (None without): the stored set, or where it is not
        held in memory ``count`` of them (at most ``POOL_BYTES`` of them) drawn with ``seed``."""
        count = min(count, max(1, POOL_BYTES // math.prod(self.images.shape[1:])))
        if isinstance(self.images, torch.Tensor) or len(self.images) <= count:
            picks = torch.arange(len(self.images))
        else:
            picks = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(seed))[:count].sort()[0]
        return self.images[picks], None if self.labels is None else self.labels[picks]

    def next_labelled_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch and its int64 labels (the same batch ``next_batch`` would have given)."""
        if self.labels is None:
            raise UserError("this data has no labels")
        picks = self._next_indices(batch_size)
        return to_unit_range(self._images(picks)), self.labels[picks % len(self.images)]

    def _images(self, picks: torch.Tensor) -> torch.Tensor:
        """uint8 images of stream indices: i < N is stored image i, N + i its mirror image."""
        images = self.images[picks % len(self.images)]
        if self.mirror:
            flipped = picks >= len(self.images)
            images[flipped] = images[flipped].flip(-1)
        return images

    def _next_indices(self, batch_size: int) -> torch.Tensor:
        picks = []
        while batch_size > 0:
            take = min(batch_size, self.size - self.cursor)
            picks.append(self._order[self.cursor : self.cursor + take])
            self.cursor += take
            batch_size -= take
            if self.cursor == self.size:
                self._set_position(self.epoch + 1, 0)
        return torch.cat(picks)

    def _set_position(self, epoch: int, cursor: int) -> None:
        self._order = shuffled_order(self.size, self.seed, epoch)  # cheap: once per epoch or load
        self.epoch, self.cursor = epoch, cursor

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}

    def load_state_dict(self, state: dict) -> None:
        self._set_position(int(state["epoch"]), int(state["cursor"]))


class GeneratorStream:
    """Base for streams that draw every batch from their own seeded torch.Generator (state = RNG state)."""

    def __init__(self, seed: int):
        self.rng = torch.Generator().manual_seed(seed)

    def state_dict(self) -> dict:
        return {"rng": self.rng.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.set_state(state["rng"])


def resize_images(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize uint8 [N, C, h, w] square images to [N, C, resolution, resolution] (antialiased when shrinking)."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    out = []
    for chunk in images.split(1024):
        resized = F.interpolate(chunk.float(), size=(resolution, resolution), mode="bilinear",
                                align_corners=False, antialias=chunk.shape[-1] > resolution)
        out.append(resized.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def check_resolution(resolution: int, maximum: int = 256) -> None:
    if not 4 <= resolution <= maximum:
        raise UserError(f"unsupported resolution {resolution} (use 4..{maximum})")
