"""The one definition of latents: seed -> z. Every sampler, server, benchmark and sample grid uses it.

The latent for seed ``s`` is ``z_dim`` standard normal float32 values drawn by NumPy's PCG64 generator
seeded with ``s`` (``numpy.random.default_rng(s).standard_normal(z_dim, dtype=float32)``). It does not
depend on the device, the backend or how seeds are split into batches. ``LatentControls`` (truncation, a chosen
class) change it the same way wherever it is made; their defaults leave it as drawn, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from ganforge.errors import UserError

_NORMAL = NormalDist()


@dataclass(frozen=True)
class LatentControls:
    """What changes a seed's latent beyond the seed.

    ``truncation`` psi in (0, 1] scales every coordinate the generator does not read as a class towards the mean,
    z_i <- psi * z_i in float32: smaller psi, more typical and less varied images (the truncation trick of BigGAN and
    StyleGAN, in z). ``class_dims`` is how many leading coordinates the generator reads as classes (z0 .. z(G-1) of
    a conditional generator): truncation leaves them alone, so no class changes under it. ``class_ranges``, when a
    class is chosen, gives for each of them the interval (low, high] that stands for that class; the coordinate
    moves into it through the normal CDF Phi, z_g <- Phi^-1(Phi(low) + Phi(z_g) (Phi(high) - Phi(low))), so a
    seed keeps its place within the class and the same seed gives related images across classes.
    """

    truncation: float = 1.0
    class_dims: int = 0
    class_ranges: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if not (isinstance(self.truncation, (int, float)) and 0 < self.truncation <= 1):
            raise UserError(f"truncation psi must be in (0, 1], got {self.truncation}")
        if self.class_ranges and len(self.class_ranges) != self.class_dims:
            raise ValueError(f"{len(self.class_ranges)} class ranges for {self.class_dims} class coordinates")

    @property
    def is_default(self) -> bool:
        return self.truncation == 1 and not self.class_ranges

    def apply(self, z: np.ndarray) -> np.ndarray:
        """Change float32 latents [n, z_dim] in place (and return them); the defaults change nothing."""
        for g, (low, high) in enumerate(self.class_ranges):
            z[:, g] = [_into_range(float(value), low, high) for value in z[:, g]]
        if self.truncation != 1:
            z[:, self.class_dims :] *= np.float32(self.truncation)
        return z


def _into_range(value: float, low: float, high: float) -> np.float32:
    """``value`` moved into (low, high] by the normal CDF; the ends are compared in float32, as the generator does."""
    a, b = _NORMAL.cdf(low), _NORMAL.cdf(high)
    p = min(max(a + _NORMAL.cdf(value) * (b - a), 1e-300), 1 - 2**-53)
    moved, low32, high32 = np.float32(_NORMAL.inv_cdf(p)), np.float32(low), np.float32(high)
    if not moved > low32:
        moved = np.nextafter(low32, np.float32(np.inf))
    return min(moved, high32)


def latent_for_seed(seed: int, z_dim: int) -> np.ndarray:
    if seed < 0:
        raise ValueError(f"seeds must be non-negative, got {seed}")
    return np.random.default_rng(seed).standard_normal(z_dim, dtype=np.float32)


def latents_for_seeds(seeds: Iterable[int], z_dim: int, controls: LatentControls | None = None) -> np.ndarray:
    """float32 [n, z_dim], row i = latent_for_seed(seeds[i]), changed by ``controls`` if given."""
    seeds = [int(s) for s in seeds]
    out = np.empty((len(seeds), z_dim), dtype=np.float32)
    for i, seed in enumerate(seeds):
        out[i] = latent_for_seed(seed, z_dim)
    return controls.apply(out) if controls is not None else out


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
