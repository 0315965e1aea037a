"""Mode coverage on the 2D mixtures, as in PacGAN (Lin et al. 2018) and ../shared/REFERENCE.md.

A sample is high quality within 3 sigma of its nearest mode; a mode is captured when it is the nearest mode
of at least one high-quality sample; reverse KL is KL(p_gen || uniform) over the nearest-mode histogram of
the high-quality samples.
"""

from __future__ import annotations

import math

import torch


def mode_coverage(samples: torch.Tensor, modes: torch.Tensor, sigma: float) -> dict[str, float]:
    samples, modes = samples.double(), modes.double()
    distance, nearest = torch.cdist(samples, modes).min(dim=1)  # [N], [N]
    high_quality = distance <= 3 * sigma
    counts = torch.bincount(nearest[high_quality], minlength=len(modes)).double()
    total = counts.sum().item()
    if total:
        p = counts[counts > 0] / total
        reverse_kl = float((p * (p * len(modes)).log()).sum())
    else:
        reverse_kl = math.inf
    return {"modes_captured": int((counts > 0).sum()), "num_modes": len(modes),
            "high_quality": float(high_quality.double().mean()), "reverse_kl": reverse_kl}
