"""Memorisation check: does the generator copy its training images?

A generated image counts as a near-copy when its nearest training image is closer than all but 1% of the
training images are to their own nearest neighbour in the training set (pixel space). Held-out real images
score about 1% under the same rule; a generator that copies scores far above that.
"""

from __future__ import annotations

import numpy as np
import torch

from .prdc import _distances, knn_radii

QUANTILE = 0.01


def near_copy_share(samples: np.ndarray, training: np.ndarray) -> dict[str, float]:
    """``samples`` and ``training`` as float arrays of any per-image shape (flattened here)."""
    train = torch.as_tensor(training, dtype=torch.float32).flatten(1)
    gen = torch.as_tensor(samples, dtype=torch.float32).flatten(1)
    threshold = float(torch.quantile(knn_radii(train, 1), QUANTILE))
    nearest = _distances(gen, train, lambda d: d.min(dim=1).values)
    return {"near_copies": float((nearest < threshold).float().mean()), "copy_threshold": threshold}
