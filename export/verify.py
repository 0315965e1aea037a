"""Compare an exported generator with PyTorch on the same latents: max / mean / median error and PSNR.

As in Polygraphy, an element fails only when |diff| > atol *and* |diff| / |reference| > rtol.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# Bounds on the maximum absolute error against the fp32 PyTorch generator, outputs in [-1, 1].
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.25}
# int8 images are judged by PSNR too: 8-bit quantisation noise on [-1, 1] should stay above this.
MIN_PSNR_DB = {"int8": 25.0}


@dataclass(frozen=True)
class Comparison:
    batch_size: int
    max_abs: float
    mean_abs: float
    median_abs: float
    psnr_db: float

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def psnr(reference: np.ndarray, candidate: np.ndarray, peak_to_peak: float = 2.0) -> float:
    mse = float(np.mean((reference.astype(np.float64) - candidate.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak_to_peak**2 / mse)


def compare(reference: np.ndarray, candidate: np.ndarray) -> Comparison:
    if reference.shape != candidate.shape:
        raise AssertionError(f"output shape {candidate.shape} != PyTorch's {reference.shape}")
    diff = np.abs(reference.astype(np.float64) - candidate.astype(np.float64))
    return Comparison(len(reference), float(diff.max()), float(diff.mean()), float(np.median(diff)),
                      psnr(reference, candidate))


def verify(reference_fn: Callable[[np.ndarray], np.ndarray], candidate_fn: Callable[[np.ndarray], np.ndarray],
           z_dim: int, batch_sizes: Sequence[int], seed: int = 1234) -> list[Comparison]:
    """Run both on fresh standard-normal latents at each batch size."""
    rng = np.random.default_rng(seed)
    results = []
    for batch in batch_sizes:
        z = rng.standard_normal((batch, z_dim), dtype=np.float32)
        results.append(compare(reference_fn(z), candidate_fn(z)))
    return results


def failures(results: list[Comparison], precision: str) -> list[str]:
    """Human-readable reasons the results miss the precision's bounds (empty = pass)."""
    problems = []
    for r in results:
        if not math.isfinite(r.max_abs) or r.max_abs > TOLERANCES[precision]:
            problems.append(f"batch {r.batch_size}: max abs error {r.max_abs:.3g} > {TOLERANCES[precision]:g}")
        if precision in MIN_PSNR_DB and r.psnr_db < MIN_PSNR_DB[precision]:
            problems.append(f"batch {r.batch_size}: PSNR {r.psnr_db:.1f} dB < {MIN_PSNR_DB[precision]:g} dB")
    return problems


def summary_line(results: list[Comparison]) -> str:
    worst = max(results, key=lambda r: r.max_abs)
    return (f"max abs {worst.max_abs:.3g}, mean abs {np.mean([r.mean_abs for r in results]):.3g}, "
            f"PSNR {min(r.psnr_db for r in results):.1f} dB over batches "
            f"{', '.join(str(r.batch_size) for r in results)}")
