"""Per-data defaults: what `ganforge train --data D` uses for every flag that is not given.

Each recipe was chosen by measurement, not by guess: `benchmarks/recipe_sweep.py` trains the candidates over
several seeds on 2 CPU cores and writes `benchmarks/results/recipes/<data>.json`; `benchmarks/quality.py`
checks the chosen ones against the targets. Flags given on the command line always win.

    config = recipe_config("grid")                 # the grid recipe
    config = recipe_config("grid", steps=20_000)    # the same, with more steps
"""

from __future__ import annotations

from .config import TrainConfig
from .data import spec_name

# 2D mixtures: a 4 x 128 ReLU MLP from a 2D latent, non-saturating loss, batch 256, 15,000 steps (about 65 s on
# one core). Measured (benchmarks/results/recipes/README.md): on the ring, Adam 3e-4 kept 8/8 modes at 97.8-98.8%
# high quality on both seeds tried, while 1e-3 lost a mode; on the grid, 3 x 256 or 4 x 400 MLPs, R1, hinge,
# packing and batch 512 all ended below 1e-3 with 4 x 128 (25/25 modes, 96.9%, reverse KL 0.009 on seed 0),
# which still collapses on some seeds (13-20 of 25 modes on seeds 1 and 2): not yet robust.
POINTS = dict(model="mlp", z_dim=2, width=128, depth=4, loss="ns", lr_g=1e-3, lr_d=1e-3, betas=(0.5, 0.999),
              batch_size=256, steps=15_000, ema=0.999, eval_every=1500, sample_every=5000, checkpoint_every=5000)

# Small images (the bundled digits, shapes, user folders): a DCGAN at 32 px.
IMAGES = dict(model="dcgan", resolution=32, z_dim=64, width=32, loss="ns", lr_g=2e-4, lr_d=2e-4,
              betas=(0.5, 0.999), batch_size=64, steps=3000, ema=0.999, eval_every=500, sample_every=500,
              checkpoint_every=500)

RECIPES: dict[str, dict] = {
    "grid": POINTS,
    "ring": {**POINTS, "lr_g": 3e-4, "lr_d": 3e-4},
    "digits": IMAGES,
    "stacked-digits": {**IMAGES, "pack": 2},  # PacGAN's PacDCGAN2: packing spreads the 1,000 digit triples
    "shapes": IMAGES,
}


def recipe_for(data: str) -> dict:
    """The recipe of a --data spec: its own, or the small-image one for files and folders."""
    return dict(RECIPES.get(spec_name(data), IMAGES))


def recipe_config(data: str = "digits", **given) -> TrainConfig:
    """A TrainConfig for ``data``: its recipe's values, with ``given`` on top."""
    recipe = recipe_for(data)
    if given.get("model", recipe["model"]) != recipe["model"]:  # another model: its own sizes, not the recipe's
        recipe = {k: v for k, v in recipe.items() if k not in ("model", "z_dim", "width", "depth")}
    return TrainConfig(data=data, **{**recipe, **given})
