"""`ganforge train`: flags -> TrainConfig -> train() (or resume())."""

from __future__ import annotations

import argparse

from ganforge.cliutil import Parser
from ganforge.errors import UserError

from .config import LABEL_USES, LOSSES, LR_SCHEDULES, MODELS
from .precision import PRECISIONS

EXAMPLES = """\
  ganforge train --data digits --model dcgan --resolution 32 --steps 300
  ganforge train --data ring --model mlp --pack 4 --steps 2000 --batch-size 256 --lr-g 1e-3 --lr-d 1e-3
  ganforge train --data folder:~/faces --resolution 64 --loss hinge --spectral-norm --steps 500
  ganforge train --data digits --labels ignore --steps 300
  ganforge train --resume runs/00000-digits-dcgan --steps 600
  torchrun --nproc-per-node 2 --no-python ganforge train --data shapes --steps 300
"""
RESUMABLE = {"steps", "quiet"}  # the only flags that may change when a run is resumed


def build_parser() -> Parser:
    parser = Parser("train", "Train a GAN; writes a run folder with config, metrics, samples, checkpoints.",
                    EXAMPLES)
    S = argparse.SUPPRESS  # flags left out stay out, so TrainConfig's defaults apply
    add = parser.add_argument
    add("--data", default=S, help="ring, grid, digits, stacked-digits, shapes, folder:PATH, npz:PATH, "
        "idx:PATH (default digits)")
    add("--model", choices=MODELS, default=S, help="default dcgan (mlp for 2D data)")
    add("--resolution", type=int, default=S, help="image size: 16, 32 or 64 for dcgan (default 32)")
    add("--z-dim", type=int, default=S, help="latent size (default 100 dcgan, 16 mlp)")
    add("--width", type=int, default=S, help="dcgan base channels / mlp hidden units (default 64 / 256)")
    add("--depth", type=int, default=S, help="mlp hidden layers (default 3)")
    add("--loss", choices=LOSSES, default=S, help="ns (non-saturating, default), hinge, wgan-gp")
    add("--r1", type=float, default=S, help="R1 penalty weight gamma (default 0: off)")
    add("--pack", type=int, default=S, help="PacGAN packing: D judges M samples at once (default 1)")
    add("--spectral-norm", action="store_true", default=S, help="spectral normalisation in D")
    add("--augment", default=S, help="DiffAugment for small image sets: comma-separated color, translation, "
        "cutout (default: the recipe's)")
    add("--conditional", action=argparse.BooleanOptionalAction, default=S, help="labelled images: G draws a "
        "class from its latent, D is a projection discriminator; samples stay seed-in, image-out (default: the "
        "recipe's; on for digits and stacked-digits)")
    add("--self-conditional", type=int, metavar="K", default=S, help="images without labels: K pseudo-classes by "
        "k-means on the images, then trained as --conditional; 0 = off (default: the recipe's, 40 for data "
        "without labels)")
    add("--cluster-channels", action=argparse.BooleanOptionalAction, default=S, help="with --self-conditional: "
        "cluster each channel as an image of its own, a pseudo-class per channel, for channels that are separate "
        "images (default: the recipe's; on for stacked-digits with --labels ignore)")
    add("--labels", choices=LABEL_USES, default=S, help="use (default) or ignore the data's labels: ignore trains "
        "as if there were none (the self-conditional recipe); quality is still measured with them")
    add("--precision", choices=PRECISIONS, default=S, help="auto (default): bf16/fp16 on GPUs, fp32 on CPUs "
        "without native bf16")
    add("--device", default=S, help="auto (default), cpu, cuda, cuda:N")
    add("--ema", type=float, default=S, help="EMA decay of G (default 0.999; 0 = off)")
    add("--steps", type=int, default=S, help="total steps (default 1000); with --resume, the new total")
    add("--batch-size", type=int, default=S, help="global batch size (default 64)")
    add("--lr-g", type=float, default=S, help="generator learning rate (default 2e-4)")
    add("--lr-d", type=float, default=S, help="discriminator learning rate (default 2e-4)")
    add("--betas", type=float, nargs=2, default=S, help="Adam betas (default 0.5 0.999)")
    add("--lr-schedule", choices=LR_SCHEDULES, default=S, help="constant (default) or linear decay to 0 at "
        "--steps")
    add("--seed", type=int, default=S, help="default 0")
    add("--out", default=S, help="run folder (default runs/<NNNNN>-<data>-<model>)")
    add("--checkpoint-every", type=int, default=S, help="default 500")
    add("--keep-checkpoints", type=int, default=S, help="how many step checkpoints to keep (default 3)")
    add("--sample-every", type=int, default=S, help="default 500")
    add("--eval-every", type=int, default=S, help="quality metrics (as `ganforge eval`) of the EMA generator every "
        "N steps and at the end, best one kept as checkpoints/best.pt; 0 = off (default: the recipe's)")
    add("--log-every", type=int, default=S, help="metrics.jsonl record every N steps (default 10)")
    add("--quiet", action="store_true", default=S, help="no progress bar")
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
