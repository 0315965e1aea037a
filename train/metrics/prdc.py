"""Precision, recall, density and coverage on features (Naeem et al. 2020, "Reliable Fidelity and Diversity
Metrics for Generative Models"), with k-nearest-neighbour balls as the manifold estimate.

- precision: share of generated samples inside some real sample's k-NN ball;
- recall: share of real samples inside some generated sample's k-NN ball;
- density: how many real balls hold a generated sample, on average, divided by k (1 for matching sets);
- coverage: share of real samples whose ball holds at least one generated sample.
"""

from __future__ import annotations

import numpy as np
import torch

CHUNK = 2048  # rows of a distance matrix computed at once: bounds memory at CHUNK x N floats


def _distances(a: torch.Tensor, b: torch.Tensor, reduce) -> torch.Tensor:
    return torch.cat([reduce(torch.cdist(part, b)) for part in a.split(CHUNK)])


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each row to its k-th nearest other row."""
    return _distances(features, features, lambda d: d.kthvalue(k + 1, dim=1).values)  # +1: itself at 0


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall need more than k={k} samples per set")
    real_t, fake_t = torch.as_tensor(real, dtype=torch.float32), torch.as_tensor(fake, dtype=torch.float32)
    real_radii, fake_radii = knn_radii(real_t, k), knn_radii(fake_t, k)  # [R], [F]
    inside_real = torch.zeros(len(fake_t))  # per fake sample: how many real balls hold it
    covered = torch.zeros(len(real_t), dtype=torch.bool)
    recalled = torch.zeros(len(real_t), dtype=torch.bool)
    for start in range(0, len(real_t), CHUNK):
        distance = torch.cdist(real_t[start : start + CHUNK], fake_t)  # [r, F]
        radii = real_radii[start : start + CHUNK, None]
        inside_real += (distance < radii).float().sum(dim=0)
        covered[start : start + CHUNK] = distance.min(dim=1).values < radii[:, 0]
        recalled[start : start + CHUNK] = (distance < fake_radii[None]).any(dim=1)
    return {"precision": float((inside_real > 0).float().mean()), "recall": float(recalled.float().mean()),
            "density": float(inside_real.mean() / k), "coverage": float(covered.float().mean())}
