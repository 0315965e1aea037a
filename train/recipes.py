"""Per-data defaults: what `ganforge train --data D` uses for every flag that is not given.

Each recipe was chosen by measurement, not by guess: `benchmarks/recipe_sweep.py` trains the candidates over
several seeds on 2 CPU cores and writes `benchmarks/results/recipes/<data>.json`; `benchmarks/quality.py`
checks the chosen ones against the targets. Flags given on the command line always win.

    config = recipe_config("grid")                 # the grid recipe
    config = recipe_config("grid", steps=20_000)    # the same, with more steps
"""

from __future__ import annotations

from .checkpoint import find_checkpoint, load_checkpoint
from .config import TrainConfig
from .data import has_labels, spec_name
from .models import IMAGE_MODELS

# 2D mixtures: a 4 x 128 ReLU MLP from a 2D latent, non-saturating loss, batch 256, 15,000 steps (about 70 s on
# 2 cores), Adam 1e-3 decaying linearly to 0, with R1. Measured (benchmarks/results/recipes/, quality.json): a
# constant learning rate drops modes on some seeds (grid at 1e-3: 13-20 of 25 on seeds 1-2; ring at 3e-4: 8/8
# but reverse KL 0.28 on seed 3), and linear decay alone did not help (grid 14-22 modes). With R1 and the decay
# every seed tried kept every mode: the grid needs R1 0.1 (0.03 left seed 1 at 81% high quality); the ring's
# clusters are 5x tighter (sigma 0.01) and 0.03 gave the sharpest samples (0.1 cost ~1% high quality). Batch
# 512, lr 2e-3 and width 256 were each worse on at least one grid seed.
# fp32 even where the CPU has native bf16: this MLP trains no faster in bf16 (4.7 s per 1,000 steps either way on
# 2 AVX-512-bf16 cores), and bf16's 8-bit mantissa rounds grid coordinates near 4 to 0.03, close to the modes' 0.05.
POINTS = dict(model="mlp", z_dim=2, width=128, depth=4, loss="ns", lr_g=1e-3, lr_d=1e-3, betas=(0.5, 0.999),
              batch_size=256, steps=15_000, ema=0.999, eval_every=1500, sample_every=5000, checkpoint_every=5000,
              precision="fp32")

# Small images (the bundled digits, shapes, user folders): a DCGAN at 32 px. The residual model at equal CPU time
# (MODEL_RECIPES below; recipes/digits-residual-conditional-*.json, 5 seeds) recognises more digits (97.4% against
# 95.8%) at a higher FD (0.30 against 0.26); on the stacked digits (5 seeds) it has the lower FD (1.55 against 2.05)
# and recognises fewer stacks (85.7% against 91.1%). Without labels it wins on the digits and becomes their recipe
# (RECIPE_MODELS below); on the stacked digits without labels it trails with 40 pseudo-classes per channel (FD 1.87
# against 1.77, 82.7% against 87.5%) and with 80 (1.86, 83.5%: recipes/stacked-digits-unlabelled-residual-k80*.json).
IMAGES = dict(model="dcgan", resolution=32, z_dim=64, width=32, loss="ns", lr_g=2e-4, lr_d=2e-4,
              betas=(0.5, 0.999), batch_size=64, steps=3000, ema=0.999, eval_every=500, sample_every=500,
              checkpoint_every=500)

# The bundled digits (1,797 images, 10 labelled classes): the DCGAN made class-conditional (G draws its class from
# z0, D is a projection discriminator), DiffAugment (translation, cutout), 6,000 steps, linear decay. Measured on
# one seed each (benchmarks/results/recipes/digits-*.json): the unconditional DCGAN recognised 45-58% of samples
# whatever was tried (losses, R1, spectral norm, 16 px, width 64, every DiffAugment policy, up to 9,000 steps;
# FD 2.2 at best): its samples between classes are no digit. Conditional: 96.4% at 3,000 steps (FD 0.32, recall
# 0.74), 95.9% at 6,000 (FD 0.23, recall 0.82); without augmentation 98.1% at 3,000 but FD 0.48, recall 0.57 and
# near-copies of training images 30x as often.
SMALL_SET = {**IMAGES, "augment": "translation,cutout", "steps": 6000, "lr_schedule": "linear", "eval_every": 1500,
             "sample_every": 1500, "checkpoint_every": 1500}
DIGITS = {**SMALL_SET, "conditional": True}

# Images without labels (folders without class subfolders, npz/idx without labels, or any data with --labels
# ignore): the same conditional DCGAN on pseudo-classes, k-means clusters of the images' pooled pixels
# (train/clusters.py), more clusters than the data has classes. Measured on the digits with their labels ignored
# (benchmarks/results/recipes/digits-unlabelled-k.json, one seed each): K = 10 recognised 85% (FD 1.28), 20 94%
# (FD 0.33), 40 96% (FD 0.23), 80 98% but FD 0.37, recall 0.66 and 6x the near-copies of training images; over 5
# seeds K = 40 gives 96.6% and FD 0.26 (quality.json's previous_recipe of digits-unlabelled, docs/quality.md). The
# digits themselves now train the residual model on 80 (RECIPE_MODELS).
UNLABELLED = {**SMALL_SET, "self_conditional": 40}

# Files with labels (class subfolders, an npz "labels" array, IDX label files) and the bundled shapes: the digits'
# conditional recipe with Adam at 1e-3 (G and D) instead of 2e-4. On the 6,000 shapes written as a folder of class
# subfolders, 6,000 steps, seed 0, fp32 (benchmarks/results/recipes/shapes-labelled-s6000-*-fp32.json): FD 1.97 at
# 1e-3 against 7.61 at 5e-4 and 13.3 at 2e-4, precision 0.16 against 0.013 and 0.001, recall 0.67 against 0.39 and
# 0.17, 91% recognised against 70% and 37%; 2e-4 over twice the steps reached FD 6.6 (shapes-folder-labelled-fp32.json).
# R1 (0.1) at 2e-4 was worse (FD 19.1). The digits (1,797 images) keep 2e-4: their recipe met its targets.
FILES = {"lr_g": 1e-3, "lr_d": 1e-3, "steps": 6000}
LABELLED_FILES = {**DIGITS, **FILES}
# Folders and files without labels: the same, on pseudo-classes of the images framed to their ink before clustering
# (framed16: what is drawn, not where nor how large), with the clusters that split one tight group merged back
# (--merge-clusters). On the bundled shapes written as a flat folder the pooled pixels group the shapes by where they
# are drawn (the 18 shape x colour kinds 22% pure), centred16 by what is drawn and its size (70%), framed16 by what
# is drawn alone (100%), and the merge turns framed16's 40 clusters into the 18 kinds (on every k-means seed tried,
# merge_heights.json). Chosen at 2e-4 on an fp32 Xeon, seed 1 (recipes/shapes-folder-*-fp32.json): recognised 65.5%
# against 54.5% for centred16 and 64.3% with the labels, recall 0.55 against 0.44 and 0.49. With the files' 1e-3, over
# 5 seeds (recipes/shapes-labelled-lr1e-3-fp32.json, shapes-folder-lr1e-3-weighed-fp32.json): FD 1.57 against 2.26
# with the labels, precision / recall 0.18 / 0.79 against 0.13 / 0.72, 91.4% recognised against 90.3%, in 11% less
# CPU time. The built-in sets keep the pooled pixels they were measured with (digits: 93.5% either way).
UNLABELLED_FILES = {**UNLABELLED, **FILES, "cluster_features": "framed16", "merge_clusters": True}

RECIPES: dict[str, dict] = {
    "grid": {**POINTS, "r1": 0.1, "lr_schedule": "linear"},
    # the ring over 20,000 steps (about 105 s): 15,000 left it at 97.97% high quality over 5 seeds, just short of
    # 98%; the longer decay sharpens its 5x tighter clusters (98.3-99.0% per seed, benchmarks/results/quality.json)
    "ring": {**POINTS, "r1": 0.03, "lr_schedule": "linear", "steps": 20_000},
    "digits": DIGITS,
    # The digits' recipe made conditional on each channel's digit (G draws three digits from z0..z2, D adds one
    # class logit per channel), at width 64. One seed each (benchmarks/results/recipes/stacked-digits-*.json):
    # conditional width 64, 6,000 steps: 1,000 triples, KL 0.019 (the sampling floor at 26,000 samples), 91.5% of
    # samples with all three digits recognised, FD 1.50 in 375 s; width 32: KL 0.018, 90.5%, FD 2.28 in 196 s.
    # Unconditional (--no-conditional; PacGAN's setting, labels unused), best found: PacGAN2 packing, width 64,
    # DiffAugment, 9,000 steps with decay: 1,000 triples but KL 0.19, FD 18.3, 6.3% recognised, in 462 s.
    "stacked-digits": {**DIGITS, "width": 64},
    "shapes": LABELLED_FILES,
}
# The same data trained as if it had no labels (--labels ignore): PacGAN's like-for-like setting.
UNLABELLED_RECIPES: dict[str, dict] = {
    "digits": UNLABELLED,
    # each channel clustered as a digit image of its own (--cluster-channels): whole-stack clusters match the hidden
    # triples 4% (K=40) to 15% (K=200) of the time, per-channel ones the hidden digits 92.5% (cluster_purity.json);
    # 5 seeds on an AMX Xeon (2 more on an AVX2 EPYC): 1,000 triples on each, KL 0.021-0.028, FD 1.21-1.69, 718 and
    # 820 s for the two runs timed alone (quality.json, docs/quality.md)
    "stacked-digits": {**UNLABELLED, "width": 64, "cluster_channels": True},
    "shapes": UNLABELLED_FILES,
}

# Another image model than the recipe's (--model residual) takes the recipe's data settings (classes, augmentation,
# steps, schedule) with its own size and optimizer, chosen at equal CPU time against the DCGAN recipe in fp32
# (docs/quality.md). 32 px digits: width 8, Adam 2e-3, betas (0, 0.99) (benchmarks/results/recipes/
# digits-residual-*.json): the model's default width 32 costs 5.8x the DCGAN's step (residual_blocks-fp32-xeon.json),
# and with the DCGAN's Adam 2e-4, betas (0.5, 0.999) width 8 reached FD 7.4 where these values reach 0.71 (both
# without classes). The stacked digits (their DCGAN is width 64): width 16 at Adam 1e-3, FD 1.42 against 3.05 at
# 2e-3, which was not stable, and 2.83 for width 8 over 18,000 steps (stacked-digits-residual*.json). Files take
# the digits' values: the residual model is not measured on them yet.
MODEL_RECIPES: dict[str, dict] = {"residual": {"width": 8, "lr_g": 2e-3, "lr_d": 2e-3, "betas": (0.0, 0.99)}}
# Keyed by the model and the recipe's row: the data's name, "-unlabelled" added where its labels go unused (the rows
# of benchmarks/quality.py); a data name alone holds with labels and without.
MODEL_DATA_RECIPES: dict[tuple[str, str], dict] = {
    ("residual", "stacked-digits"): {"width": 16, "lr_g": 1e-3, "lr_d": 1e-3},
    # 5,250 steps: the DCGAN's 6,000 in the same CPU time in fp32 (its step costs 1.14x the DCGAN's; in bf16 the
    # recipe took 348 s against the DCGAN recipe's 323 s on an AMD EPYC: recipes/digits-unlabelled-*-timed-alone.json).
    # 80 pseudo-classes:
    # with the DCGAN's 40 (93.5% pure against the hidden digits) it recognised 94.0% against the DCGAN's 95.9% at
    # a level FD (0.26), falling late in training; with 80, over 5 seeds, FD 0.23 (0.18-0.28; lower on 4 seeds),
    # 97.7% (96.8-99.0; higher on all 5), recall 0.82 against 0.74, fewer near-copies (0.05-0.30% against
    # 0.30-0.70%) (recipes/digits-unlabelled-residual-k80.json against digits-unlabelled-residual.json). The DCGAN
    # does not gain from 80 (FD 0.37, recall 0.66: digits-unlabelled-k.json), so its recipe keeps 40.
    ("residual", "digits-unlabelled"): {"self_conditional": 80, "steps": 5250},
}
# The model a recipe trains where the measurement chose another than the DCGAN it was first measured with (row ->
# model): a flag's --model still picks any model, each with its own measured values (--model dcgan: the DCGAN's).
RECIPE_MODELS: dict[str, str] = {"digits-unlabelled": "residual"}


def recipe_row(data: str, labels: str = "use") -> str:
    """The name of the recipe a --data spec trains with: its data's name, with "-unlabelled" where it has no labels
    or they are ignored (as the rows of benchmarks/quality.py). Looks at a folder's files once."""
    name = spec_name(data)
    return name if name in ("ring", "grid") or (labels == "use" and has_labels(data)) else f"{name}-unlabelled"


def model_recipe(model: str, row: str) -> dict:
    """The size and optimizer (and, where measured, steps and classes) that ``model`` trains with on the recipe row
    ``row`` in place of the recipe's (empty for a model without measured values of its own)."""
    data = row.removesuffix("-unlabelled")
    return {**MODEL_RECIPES.get(model, {}), **MODEL_DATA_RECIPES.get((model, data), {}),
            **MODEL_DATA_RECIPES.get((model, row), {})}


def data_recipe(row: str) -> dict:
    """The DCGAN recipe of a recipe row (the MLP's for the 2D sets): its own for the built-in sets; for files, the
    conditional one where they have labels and the self-conditional one where they have none or ignore them."""
    data, unlabelled = row.removesuffix("-unlabelled"), row.endswith("-unlabelled")
    if data in RECIPES:
        return dict(UNLABELLED_RECIPES.get(data, UNLABELLED) if unlabelled else RECIPES[data])
    return dict(UNLABELLED_FILES if unlabelled else LABELLED_FILES)


def recipe_for(data: str, labels: str = "use", model: str | None = None) -> dict:
    """What ``ganforge train --data data`` (with ``--labels labels`` and ``--model model``) trains with: the data's
    recipe, with the model the recipe picks (RECIPE_MODELS) or ``model`` in place of the DCGAN, at that model's own
    size and optimizer."""
    row = recipe_row(data, labels)
    recipe = data_recipe(row)
    model = model or RECIPE_MODELS.get(row, recipe["model"])
    if model == recipe["model"]:
        return recipe
    # another model: its own sizes, not the recipe's, and its classes if it has them
    dropped = MODEL_SIZES if model in IMAGE_MODELS and recipe["model"] in IMAGE_MODELS else MODEL_FIELDS
    return {**{k: v for k, v in recipe.items() if k not in dropped}, "model": model, **model_recipe(model, row)}


# the fields that make a run self-conditional and shape its pseudo-classes
PSEUDO_CLASSES = ("self_conditional", "cluster_channels", "cluster_features", "merge_clusters")
# the model and its sizes: another --model than the recipe's drops the recipe's values of these
MODEL_SIZES = ("model", "z_dim", "width", "width_d", "depth", "full_size_blocks", "batch_norm_g", "batch_norm_d")
# how the model uses the data's classes: kept for another image model (each takes labels and pseudo-classes alike)
CLASS_FIELDS = ("conditional", *PSEUDO_CLASSES)
MODEL_FIELDS = (*MODEL_SIZES, *CLASS_FIELDS)
# what a fine-tuned run takes from the run it starts from (--init-from), under the flags given
ARCHITECTURE = (*MODEL_FIELDS, "resolution", "pack", "spectral_norm")


def recipe_config(data: str = "digits", **given) -> TrainConfig:
    """A TrainConfig for ``data``: its recipe's values, with ``given`` on top (and, with ``init_from``, the
    architecture of the run it names between the two)."""
    labels = given.get("labels", "use")
    if given.get("init_from"):
        checkpoint = load_checkpoint(find_checkpoint(given["init_from"]))
        taken = {k: checkpoint["train_config"][k] for k in ARCHITECTURE if k in checkpoint["train_config"]}
        prior = checkpoint["generator_config"].get("class_prior")
        if taken.get("self_conditional") and prior:
            # its G draws as many pseudo-classes as its clusters kept (fewer than asked after --merge-clusters): the
            # new data is clustered into exactly that many, and not merged again, so that the weights fit
            taken.update(self_conditional=len(prior), merge_clusters=False)
        recipe = recipe_for(data, labels, taken.get("model"))
        return TrainConfig(data=data, **{**recipe, **taken, **given})
    recipe = recipe_for(data, labels, given.get("model"))
    if given.get("conditional") or given.get("self_conditional") == 0:  # no pseudo-classes
        for field in PSEUDO_CLASSES:
            recipe.pop(field, None)
    if given.get("self_conditional"):
        recipe.pop("conditional", None)
    return TrainConfig(data=data, **{**recipe, **given})
