"""Mode coverage on the 2D mixtures, as in PacGAN (Lin et al. 2018) and ../shared/REFERENCE.md.

A sample is high quality within 3 sigma of its nearest mode; a mode is captured when it is the nearest mode
of at least one high-quality sample; reverse KL is KL(p_gen || uniform) over the nearest-mode histogram of
the high-quality samples (null when there is none: it is undefined, and JSON has no Infinity).

``mode_overlap`` is the one number training uses to keep its best checkpoint: the probability mass that the
generator puts on high-quality samples, counted per mode up to the uniform share 1/K. It is 1 for a perfect
generator and loses 1/K for each missing mode, the share of low-quality samples, and any imbalance.
"""

from __future__ import annotations

import torch


def nearest_mode_counts(samples: torch.Tensor, modes: torch.Tensor, sigma: float) -> tuple[torch.Tensor, float]:
    """Histogram [K] of the nearest mode of each high-quality sample, and the high-quality share."""
    samples, modes = samples.double(), modes.double()
    distance, nearest = torch.cdist(samples, modes).min(dim=1)  # [N], [N]
    high_quality = distance <= 3 * sigma
    counts = torch.bincount(nearest[high_quality], minlength=len(modes)).double()
    return counts, float(high_quality.double().mean())


def kl_to_uniform(counts: torch.Tensor) -> float | None:
    """KL(p || uniform) of a histogram (natural log); None for an empty one."""
    total = float(counts.sum())
    if not total:
        return None
    p = counts[counts > 0].double() / total
    return max(0.0, float((p * (p * len(counts)).log()).sum()))


def mode_coverage(samples: torch.Tensor, modes: torch.Tensor, sigma: float) -> dict[str, float | int | None]:
    counts, high_quality = nearest_mode_counts(samples, modes, sigma)
    k = len(modes)
    overlap = float(torch.clamp(counts / len(samples), max=1.0 / k).sum())
    return {"modes_captured": int((counts > 0).sum()), "num_modes": k, "high_quality": high_quality,
            "reverse_kl": kl_to_uniform(counts), "mode_overlap": overlap}
