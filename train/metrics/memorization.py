"""Memorisation check: does the generator copy its training images?

A generated image counts as a near-copy when its nearest training image is closer than all but 1% of the
training images are to their own nearest neighbour in the training set (pixel space). Held-out real images
score about 1% under the same rule; a generator that copies scores far above that.
"""

from __future__ import annotations

import numpy as np
import torch

from .prdc import knn_radii

QUANTILE = 0.01


def copy_threshold(training: np.ndarray) -> float:
    """The distance under which a sample counts as a near-copy of ``training`` (computed once per training set)."""
    train = torch.as_tensor(training, dtype=torch.float32).flatten(1)
    return float(torch.quantile(knn_radii(train, 1), QUANTILE))


def near_copy_share(samples: np.ndarray, training: np.ndarray, threshold: float | None = None) -> dict[str, float]:
    """``samples`` and ``training`` as float arrays of any per-image shape (flattened here); ``threshold`` from
    ``copy_threshold(training)`` where the caller keeps it."""
    threshold = copy_threshold(training) if threshold is None else threshold
    gen = torch.as_tensor(samples, dtype=torch.float32).flatten(1)
    nearest = torch.full((len(gen),), float("inf"))
    for part in torch.as_tensor(training).split(1000):  # as floats a part at a time: the set may be large
        nearest = torch.minimum(nearest, torch.cdist(gen, part.flatten(1).float()).min(dim=1).values)
    return {"near_copies": float((nearest < threshold).float().mean()), "copy_threshold": threshold}
