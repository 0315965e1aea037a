"""Fréchet distance and kernel distance (KID) between two feature sets, as StyleGAN2-ADA's metrics/ defines them.

Both take feature matrices ``[N, D]`` (float64 is used inside). FD compares Gaussians fitted to each set;
KID is the unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    mean_term = np.square(mu_a - mu_b).sum()
    with warnings.catch_warnings():  # a collapsed generator has a singular covariance: the distance is still right
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(sigma_a @ sigma_b)
    return float(np.real(mean_term + np.trace(sigma_a + sigma_b - 2 * root)))


def frechet_distance_of(features_a: np.ndarray, features_b: np.ndarray) -> float:
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def kernel_distance(features_a: np.ndarray, features_b: np.ndarray, num_subsets: int = 100,
                    max_subset_size: int = 1000, seed: int = 0) -> float:
    """KID: unbiased MMD^2 with k(x, y) = (x.y / D + 1)^3 over ``num_subsets`` subsets of equal size."""
    a, b = np.asarray(features_a, np.float64), np.asarray(features_b, np.float64)
    dim = a.shape[1]
    m = min(len(a), len(b), max_subset_size)
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        within = (x @ x.T / dim + 1) ** 3 + (y @ y.T / dim + 1) ** 3
        across = (x @ y.T / dim + 1) ** 3
        total += (within.sum() - np.diag(within).sum()) / (m - 1) - across.sum() * 2 / m
    return float(total / num_subsets / m)
