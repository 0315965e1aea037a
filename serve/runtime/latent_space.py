"""A generator's latent space: its z size and the classes it reads from z, and the controls a user may set on it
(truncation, a chosen class), checked against the model. Sampling, the HTTP server, eval and the Triton seed model
all make their latents here, so a seed with the same controls gives the same latent, and image, everywhere.

    space = LatentSpace.of(runner.info)
    z = space.latents(range(16), space.controls(truncation=0.7, classes=(3,)))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ganforge.errors import UserError
from ganforge.latents import LatentControls, latents_for_seeds


@dataclass(frozen=True)
class LatentSpace:
    z_dim: int
    class_prior: tuple[float, ...] = ()  # empty: the generator reads no class from z
    class_groups: int = 1  # classes per sample (stacked digits: one per channel)

    @classmethod
    def of(cls, info) -> LatentSpace:
        """From a RunnerInfo (or anything with z_dim, class_prior and class_groups)."""
        return cls(info.z_dim, tuple(info.class_prior), info.class_groups)

    @classmethod
    def from_generator_config(cls, config: dict) -> LatentSpace:
        return cls(int(config["z_dim"]), tuple(config.get("class_prior") or ()), int(config.get("class_groups", 1)))

    @property
    def num_classes(self) -> int:
        return len(self.class_prior)

    def controls(self, truncation: float = 1.0, classes: Iterable[int] | None = None) -> LatentControls:
        """The controls for this model; a class it does not have, or one for a model without classes, is a
        UserError that says what it has."""
        dims = self.class_groups if self.class_prior else 0
        if classes is None:
            return LatentControls(truncation, dims)
        chosen = tuple(int(k) for k in classes)
        if not self.class_prior:
            raise UserError("this model has no classes to choose (it was trained without labels or pseudo-classes)")
        if len(chosen) != self.class_groups:
            example = ",".join(str(k % self.num_classes) for k in range(3, 3 + self.class_groups))
            raise UserError(f"this model draws {self.class_groups} classes per sample (one per channel): give "
                            f"{self.class_groups}, e.g. {example}")
        wrong = [k for k in chosen if not 0 <= k < self.num_classes]
        if wrong:
            raise UserError(f"class {wrong[0]} is out of range: this model has classes 0..{self.num_classes - 1}")
        from ganforge.train.models.classes import class_ranges

        return LatentControls(truncation, dims, class_ranges(list(self.class_prior), self.class_groups, chosen))

    def latents(self, seeds: Iterable[int], controls: LatentControls | None = None) -> np.ndarray:
        return latents_for_seeds(seeds, self.z_dim, controls)

    def classes_of(self, z: np.ndarray) -> np.ndarray:
        """The classes the generator reads from latents z: int64 [n, class_groups] (edges[k] < z_g <= edges[k+1])."""
        if not self.class_prior:
            raise ValueError("this model reads no class from z")
        from ganforge.train.models.classes import LatentClasses

        edges = LatentClasses(list(self.class_prior), self.class_groups).edges.numpy()
        found = np.searchsorted(edges, np.asarray(z[:, : self.class_groups], dtype=np.float32), side="left") - 1
        return np.clip(found, 0, self.num_classes - 1).astype(np.int64)


def parse_classes(text: str) -> tuple[int, ...]:
    """'3' or '3,1,4' (one class per group) -> (3,) or (3, 1, 4)."""
    try:
        chosen = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UserError(f"--class takes class numbers, e.g. 3 or 3,1,4 (one per channel); got {text!r}") from None
    return chosen
