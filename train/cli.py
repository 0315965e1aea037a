"""`ganforge train`: flags -> TrainConfig -> train() (or resume())."""

from __future__ import annotations

import argparse

from ganforge.cliutil import Parser
from ganforge.errors import UserError
from ganforge.images import VIDEO_FORMATS

from .clusters import CLUSTER_FEATURES
from .config import LABEL_USES, LOSSES, LR_SCHEDULES, MODEL_DEFAULTS, MODELS, TrainConfig
from .precision import PRECISIONS
from .recipes import UNLABELLED_FILES, recipe_for

EXAMPLES = """\
  ganforge train --data digits --model dcgan --resolution 32 --steps 300
  ganforge train --data ring --model mlp --pack 4 --steps 2000 --batch-size 256 --lr-g 1e-3 --lr-d 1e-3
  ganforge train --data folder:~/faces --resolution 64 --loss hinge --spectral-norm --steps 500
  ganforge train --data shapes --model residual --width 16 --loss rpgan --r1 0.1 --r2 0.1 --steps 100
  ganforge train --data folder:~/faces --init-from runs/00003-shapes-residual --freeze-d 2 --mirror --steps 100
  ganforge train --data folder:~/faces --fit pad --resolution 64 --steps 100
  ganforge train --data digits --labels ignore --steps 300
  ganforge train --data digits --augment translation,cutout --ada-target 0.6 --steps 300
  ganforge train --resume runs/00000-digits-dcgan --steps 600
  torchrun --nproc-per-node 2 --no-python ganforge train --data shapes --steps 300
  ganforge train --data ring --steps 3000 --tensorboard         # then: tensorboard --logdir runs/
  ganforge train --data digits --steps 3000 --sample-every 250 --progress-video
"""
RESUMABLE = {"steps", "quiet"}  # the only flags that may change when a run is resumed
RECIPE_EXAMPLES = {"digits": recipe_for("digits"), "digits --labels ignore": recipe_for("digits", "ignore"),
                   "stacked-digits": recipe_for("stacked-digits"), "ring": recipe_for("ring"),
                   "folders without labels": UNLABELLED_FILES}


def recipe_default(field: str) -> str:
    """What the recipes set ``field`` to, for --help: every --data takes its recipe's value for a flag left out."""
    fallback = TrainConfig.__dataclass_fields__[field].default

    def shown(recipe: dict) -> str:
        value = recipe.get(field, fallback)
        if value is None:  # a size left to the model: its own
            value = MODEL_DEFAULTS[recipe["model"]].get(field)
        return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)

    values = {name: shown(recipe) for name, recipe in RECIPE_EXAMPLES.items()}
    if len(set(values.values())) == 1:
        return f"default {next(iter(values.values()))} in every recipe"
    return "default: the --data recipe's, " + ", ".join(f"{name} {value}" for name, value in values.items())


def build_parser() -> Parser:
    parser = Parser("train", "Train a GAN; writes a run folder with config, metrics, samples, checkpoints.",
                    EXAMPLES)
    S = argparse.SUPPRESS  # flags left out stay out, so TrainConfig's defaults apply
    add = parser.add_argument
    add("--data", default=S, help="ring, grid, digits, stacked-digits, shapes, folder:PATH, npz:PATH, "
        "idx:PATH (default digits)")
    add("--model", choices=MODELS, default=S, help=recipe_default("model"))
    add("--resolution", type=int, default=S,
        help=f"image size: 16, 32 or 64 for dcgan, 16 to 1024 (powers of 2) for residual "
        f"({recipe_default('resolution')})")
    add("--z-dim", type=int, default=S, help=f"latent size ({recipe_default('z_dim')})")
    add("--width", type=int, default=S, help="dcgan base channels, residual channels at full size, mlp hidden units "
        f"({recipe_default('width')}; residual 32)")
    add("--width-d", type=int, default=S, help="D's width where it differs from G's, as --width for D (--width)")
    add("--depth", type=int, default=S, help="mlp hidden layers (3), residual blocks per stage (1)")
    add("--full-size-blocks", type=int, default=S, help="residual blocks at full size in G and D (--depth); 0: "
        "G draws the image from the upsampled features with a 3x3 convolution, D reads it with one")
    add("--batch-norm-g", action=argparse.BooleanOptionalAction, default=S, help="residual: BatchNorm in G's blocks "
        "(as the DCGAN's G and SNGAN's residual one)")
    add("--batch-norm-d", action=argparse.BooleanOptionalAction, default=S, help="residual: BatchNorm in D's blocks "
        "(as the DCGAN's D; not with --r1, --r2 or wgan-gp)")
    add("--loss", choices=LOSSES, default=S, help="ns (non-saturating), hinge, wgan-gp, rpgan (relativistic "
        f"pairing) ({recipe_default('loss')})")
    add("--r1", type=float, default=S, help=f"R1 penalty weight gamma, 0 = off ({recipe_default('r1')})")
    add("--r2", type=float, default=S, help=f"R2 penalty weight (R1 on generated images), 0 = off "
        f"({recipe_default('r2')})")
    add("--pack", type=int, default=S, help="PacGAN packing: D judges M samples at once (default 1)")
    add("--spectral-norm", action="store_true", default=S, help="spectral normalisation in D")
    add("--augment", default=S, help="DiffAugment for small image sets: comma-separated color, translation, "
        "cutout (default: the recipe's)")
    add("--ada-target", type=float, metavar="R", default=S, help="adaptive augmentation: the --augment policies "
        "apply to a share p of the samples, raised while E[sign D(real)] is above R (ADA uses 0.6) and lowered "
        "below it; 0 = off, every sample augmented (default 0)")
    add("--conditional", action=argparse.BooleanOptionalAction, default=S, help="labelled images: G draws a "
        "class from its latent, D is a projection discriminator; samples stay seed-in, image-out (default: the "
        "recipe's; on for digits and stacked-digits)")
    add("--self-conditional", type=int, metavar="K", default=S, help="images without labels: K pseudo-classes by "
        "k-means on the images, then trained as --conditional; 0 = off (default: the recipe's, 40 for data "
        "without labels, 80 for digits with --labels ignore)")
    add("--cluster-channels", action=argparse.BooleanOptionalAction, default=S, help="with --self-conditional: "
        "cluster each channel as an image of its own, a pseudo-class per channel, for channels that are separate "
        "images (default: the recipe's; on for stacked-digits with --labels ignore)")
    add("--cluster-features", choices=CLUSTER_FEATURES, default=S, help="with "
        "--self-conditional: the embedding k-means clusters, the images' pooled pixels (pixels16), or those of each "
        "image shifted so its ink is centred (centred16: what is drawn, not where), or with its ink framed to fill "
        "the image (framed16: not where, nor how large) (default: the recipe's)")
    add("--merge-clusters", action=argparse.BooleanOptionalAction, default=S, help="with --self-conditional: "
        "merge the k-means clusters that split one tight group of images (K is then the most pseudo-classes); "
        "groups of spread images keep all K (default: the recipe's; on for folders and files)")
    add("--recluster-every", type=int, metavar="N", default=S, help="with --self-conditional: cluster the images "
        "again every N steps on the discriminator's features, each new cluster numbered after the old one it "
        "overlaps most; 0 = never (default: the recipe's)")
    add("--mirror", action="store_true", default=S, help="x-flipped copies of the images as more data (default off)")
    add("--fit", choices=("crop", "pad"), default=S, help="folders: non-square images keep their centred square "
        "(crop, default) or get black borders (pad)")
    add("--labels", choices=LABEL_USES, default=S, help="use (default) or ignore the data's labels: ignore trains "
        "as if there were none (the self-conditional recipe); quality is still measured with them")
    add("--init-from", metavar="RUN_OR_CHECKPOINT", default=S, help="fine-tune: G, D and the EMA start from this "
        "run folder (its latest checkpoint) or checkpoint file, of the same model, size and class count; the "
        "optimizers start fresh")
    add("--freeze-d", type=int, metavar="N", default=S, help="keep D's first N blocks from the image side as they "
        "are (FreezeD, for fine-tuning on little data; default 0)")
    add("--precision", choices=PRECISIONS, default=S, help="auto (default): bf16/fp16 on GPUs, fp32 on CPUs "
        "without native bf16")
    add("--device", default=S, help="auto (default), cpu, cuda, cuda:N")
    add("--ema", type=float, default=S, help=f"EMA decay of G, 0 = off ({recipe_default('ema')}); it ramps up as "
        "(1+step)/(10+step) to this value, which 0.999 reaches at step ~9,000")
    add("--steps", type=int, default=S, help=f"total steps, with --resume the new total ({recipe_default('steps')})")
    add("--batch-size", type=int, default=S, help=f"global batch size ({recipe_default('batch_size')})")
    add("--lr-g", type=float, default=S, help=f"generator learning rate ({recipe_default('lr_g')})")
    add("--lr-d", type=float, default=S, help=f"discriminator learning rate ({recipe_default('lr_d')})")
    add("--betas", type=float, nargs=2, default=S, help=f"Adam betas ({recipe_default('betas')})")
    add("--lr-schedule", choices=LR_SCHEDULES, default=S, help="constant or linear decay to 0 at --steps "
        f"({recipe_default('lr_schedule')})")
    add("--seed", type=int, default=S, help="default 0")
    add("--out", default=S, help="run folder (default runs/<NNNNN>-<data>-<model>)")
    add("--checkpoint-every", type=int, default=S,
        help=f"checkpoint every N steps ({recipe_default('checkpoint_every')})")
    add("--keep-checkpoints", type=int, default=S, help="how many step checkpoints to keep (default 3)")
    add("--sample-every", type=int, default=S, help=f"sample grid every N steps ({recipe_default('sample_every')})")
    add("--eval-every", type=int, default=S, help="quality metrics (as `ganforge eval`) of the EMA generator every "
        "N steps and at the end, best one kept as checkpoints/best.pt; 0 = off (default: the recipe's)")
    add("--log-every", type=int, default=S, help="metrics.jsonl record every N steps (default 10)")
    add("--quiet", action="store_true", default=S, help="no progress bar")
    add("--progress-video", nargs="?", const="gif", choices=VIDEO_FORMATS, default=S, help="at the end, write "
        "RUN/progress.gif (or .mp4 with --progress-video mp4): the fixed-seed sample grids of samples/ in step order "
        "(default off)")
    add("--tensorboard", action="store_true", default=S, help="also write TensorBoard event files (losses, "
        "images/s, quality metrics, sample grids) under RUN/tensorboard/ (default off; needs the tensorboard extra)")
    add("--resume", metavar="RUN_DIR", default=S, help="continue this run from its latest checkpoint")
    return parser


def main(argv: list[str]) -> int:
    given = vars(build_parser().parse_args(argv))
    from .loop import resume, train  # torch and the rest load only once the flags are known to be valid
    from .recipes import recipe_config

    if "resume" in given:
        run_dir = given.pop("resume")
        fixed = sorted(set(given) - RESUMABLE)
        if fixed:
            flags = ", ".join("--" + name.replace("_", "-") for name in fixed)
            raise UserError(f"{flags} cannot change when resuming (the run keeps its config.json); "
                            "only --steps and --quiet can")
        resume(run_dir, steps=given.get("steps"), quiet=given.get("quiet"))
        return 0
    if "betas" in given:
        given["betas"] = tuple(given["betas"])
    train(recipe_config(**given))
    return 0
