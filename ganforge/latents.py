"""The one definition of latents: seed -> z. Every sampler, server, benchmark and sample grid uses it.

The latent for seed ``s`` is ``z_dim`` standard normal float32 values drawn by NumPy's PCG64 generator
seeded with ``s`` (``numpy.random.default_rng(s).standard_normal(z_dim, dtype=float32)``). It does not
depend on the device, the backend or how seeds are split into batches.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ganforge.errors import UserError


def latent_for_seed(seed: int, z_dim: int) -> np.ndarray:
    if seed < 0:
        raise ValueError(f"seeds must be non-negative, got {seed}")
    return np.random.default_rng(seed).standard_normal(z_dim, dtype=np.float32)


def latents_for_seeds(seeds: Iterable[int], z_dim: int) -> np.ndarray:
    """float32 [n, z_dim], row i = latent_for_seed(seeds[i])."""
    seeds = [int(s) for s in seeds]
    out = np.empty((len(seeds), z_dim), dtype=np.float32)
    for i, seed in enumerate(seeds):
        out[i] = latent_for_seed(seed, z_dim)
    return out


MAX_SEED = 2**63 - 1


def parse_seeds(text: str) -> list[int]:
    """'0-99' (inclusive), '1,5,9-12', or a single number -> a list of non-negative seeds."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            if "-" in part:
                first, last = (int(x) for x in part.split("-", 1))
                if last < first:
                    raise UserError(f"seed range {part!r} runs backwards")
                seeds.extend(range(first, last + 1))
            else:
                seeds.append(int(part))
        except ValueError as error:
            raise UserError(f"bad seed list {text!r}: use e.g. 0-99 or 1,5,9-12") from error
    if not seeds:
        raise UserError("no seeds given")
    if min(seeds) < 0 or max(seeds) > MAX_SEED:
        raise UserError(f"seeds must be in 0..{MAX_SEED}")
    return seeds
