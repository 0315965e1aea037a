"""Seeds -> latents for serving: the one definition lives upstream in ganforge.train.latents (training grids use
it too); this module is the serve stage's name for it, plus the seed-list syntax of the command line."""

from __future__ import annotations

from ganforge.errors import UserError
from ganforge.train.latents import latent_for_seed, latents_for_seeds

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


__all__ = ["latent_for_seed", "latents_for_seeds", "parse_seeds"]
