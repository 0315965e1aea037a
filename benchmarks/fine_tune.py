"""Fine-tuning against training from scratch, the classic transfer case: a 64 px generator trained on all of
`shapes` is fine-tuned (`--init-from`, and with `--freeze-d`) on a small folder of one shape family, and compared
with the same recipe trained on that folder from scratch (with and without adaptive augmentation), step for step.

    python benchmarks/fine_tune.py                                  # 200 circles; 2,000 + 1,000 steps; seed 0
    python benchmarks/fine_tune.py --pretrain-steps 500 --steps 300 --every 100 --out /tmp/ft.json   # a quick look
    python benchmarks/fine_tune.py --seed 1 --keep-pretrained runs/ft-pretrained-1   # keep the pretraining run
    python benchmarks/fine_tune.py --seed 1 --pretrained runs/ft-pretrained-1        # then the arms only, from it

The pretrained network is what `ganforge train --data folder:SHAPES --resolution 64` makes of the whole pool written
as a flat folder (the folder recipe: self-conditional on 40 clusters merged back to the kinds they split, DiffAugment,
linear decay). Every arm trains with the same recipe on the small folder (the fine-tuned ones with the pretrained
network's architecture and class count) and keeps a checkpoint every `--every` steps; each checkpoint is measured with
`ganforge eval` against held-out images of the same family (not the ones trained on: what a user wants is more
circles, not those 200), in the random-embedding features `ganforge eval` uses for a folder without labels (compare
the arms, not with other tables).
The answer is the step at which each arm first reaches the FD that training from scratch ends at. Writes
benchmarks/results/fine_tune.json (with the machine) and a plot of the arms' FD curves beside it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ganforge.benchmarks.bench.environment import environment
from ganforge.benchmarks.quality import shapes_folder
from ganforge.files import atomic_write_bytes
from ganforge.serve.evaluation.evaluate import EvalConfig, evaluate_model
from ganforge.train.data import load_data
from ganforge.train.data.shapes import COLOURS, SHAPES
from ganforge.train.loop import train
from ganforge.train.recipes import recipe_config

RESOLUTION = 64
# each arm's flags over the recipe; the ADA arm is the other remedy for a small set (StyleGAN2-ADA's target 0.6)
ARMS = {"from scratch": {}, "from scratch, ADA": {"ada_target": 0.6}, "fine-tuned": {"init_from": True},
        "fine-tuned, D's first 2 blocks frozen": {"init_from": True, "freeze_d": 2}}


def family_folders(root: Path, family: str, small: int, held_out: int) -> tuple[Path, Path]:
    """``small`` images of one shape family to train on and ``held_out`` others to measure against, drawn from a
    shapes pool the pretrained network never saw (another seed), written as flat folders of PNGs."""
    from PIL import Image

    data = load_data("shapes", RESOLUTION, seed=1)
    picks = (data.labels // len(COLOURS) == SHAPES.index(family)).nonzero().flatten()  # shape x colours + colour
    if len(picks) < small + held_out:
        raise SystemExit(f"the shapes pool has {len(picks)} {family}s; ask for fewer than {small} + {held_out}")
    folders = root / f"{family}-train", root / f"{family}-held-out"
    for folder, indices in zip(folders, (picks[:small], picks[small:small + held_out])):
        folder.mkdir(parents=True)
        for index in indices.tolist():
            Image.fromarray(data.stream.images[index].permute(1, 2, 0).numpy()).save(folder / f"{index:05d}.png")
    return folders


def curve(run: Path, held_out: Path, n: int) -> list[dict]:
    """FD, precision and recall of every checkpoint of a run against the held-out folder."""
    points = []
    for checkpoint in sorted((run / "checkpoints").glob("step-*.pt")):
        result = evaluate_model(EvalConfig(model=str(checkpoint), data=f"folder:{held_out}", n=n, quiet=True,
                                           out=str(run / "eval" / checkpoint.stem)))
        g = result["generated"]
        points.append({"step": int(checkpoint.stem.split("-")[1]), "fd": g["fd"], "precision": g["precision"],
                       "recall": g["recall"]})
    return points


def pretrained(args: argparse.Namespace, root: Path, quiet: dict) -> tuple[Path, float | None]:
    """The run to fine-tune from and its training seconds: trained here on all of the shapes pool the small sets are
    not drawn from, written as a flat folder of PNGs (what a user has), or ``--pretrained``, a run this script
    trained before (its seconds are not known then)."""
    if args.pretrained:
        source = Path(args.pretrained)
        config = json.loads((source / "config.json").read_text())
        if (config["resolution"], config["steps"], config["seed"]) != (RESOLUTION, args.pretrain_steps, args.seed):
            raise SystemExit(f"--pretrained {source}: trained at {config['resolution']} px for {config['steps']} steps "
                             f"with seed {config['seed']}, not {RESOLUTION} px, --pretrain-steps {args.pretrain_steps} "
                             f"and --seed {args.seed}")
        return source, None
    start = time.perf_counter()
    shapes = shapes_folder(root / "shapes", labelled=False, resolution=RESOLUTION)
    out = args.keep_pretrained or root / "pretrained"  # the temporary folder goes when the script ends
    source = train(recipe_config(f"folder:{shapes}", resolution=RESOLUTION, steps=args.pretrain_steps,
                                 checkpoint_every=args.pretrain_steps, out=str(out), **quiet))
    seconds = time.perf_counter() - start
    print(f"pretrained on the shapes folder at {RESOLUTION} px: {args.pretrain_steps} steps in {seconds:.0f} s",
          flush=True)
    return source, round(seconds, 1)


def first_reaching(points: list[dict], fd: float) -> int | None:
    return next((p["step"] for p in points if p["fd"] <= fd), None)


def plot(arms: dict, path: Path, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for name, arm in arms.items():
        axes.plot([p["step"] for p in arm["curve"]], [p["fd"] for p in arm["curve"]], marker="o", label=name)
    axes.axhline(target, color="grey", linestyle=":", label="from scratch, last step")
    axes.set(xlabel="step on the small set", ylabel="FD against held-out images (lower is better)", yscale="log")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--family", choices=SHAPES, default="circle")
    parser.add_argument("--small", type=int, default=200, help="images of the family to train on")
    parser.add_argument("--held-out", type=int, default=1000, help="images of the family to measure against")
    parser.add_argument("--pretrain-steps", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=1000, help="steps of each arm on the small set")
    parser.add_argument("--every", type=int, default=250, help="a checkpoint (and its evaluation) every N steps")
    parser.add_argument("--n", type=int, default=2000, help="samples per evaluation")
    parser.add_argument("--seed", type=int, default=0)
    reuse = parser.add_mutually_exclusive_group()
    reuse.add_argument("--pretrained", help="a run folder this script pretrained before (--keep-pretrained; same seed "
                       "and steps): skip pretraining")
    reuse.add_argument("--keep-pretrained", help="pretrain into this new folder and keep it, for --pretrained")
    parser.add_argument("--out", default="benchmarks/results/fine_tune.json")
    args = parser.parse_args(argv)
    if args.keep_pretrained and Path(args.keep_pretrained).exists():
        parser.error(f"--keep-pretrained {args.keep_pretrained} exists: give a new folder (or reuse it: --pretrained)")
    root = Path(tempfile.mkdtemp(prefix="ganforge-fine-tune-"))
    try:
        return run(args, root, Path(args.out))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, root: Path, out: Path) -> int:
    small, held_out = family_folders(root, args.family, args.small, args.held_out)
    quiet = dict(quiet=True, eval_every=0, sample_every=args.every, seed=args.seed)

    source, pretrain_seconds = pretrained(args, root, quiet)
    results = {"environment": environment(None), "family": args.family, "small": args.small,
               "held_out": args.held_out, "resolution": RESOLUTION, "pretrain_steps": args.pretrain_steps,
               "pretrain_seconds": pretrain_seconds, "pretrained_run": args.pretrained, "steps": args.steps,
               "n": args.n, "arms": {}}
    for name, arm in ARMS.items():
        flags = {**arm, "init_from": str(source)} if arm.get("init_from") else dict(arm)
        config = recipe_config(f"folder:{small}", resolution=RESOLUTION, steps=args.steps, checkpoint_every=args.every,
                               keep_checkpoints=args.steps // args.every + 1, out=str(root / name.replace(" ", "-")),
                               **quiet, **flags)
        start = time.perf_counter()
        arm_run = train(config)
        seconds = time.perf_counter() - start
        results["arms"][name] = {"flags": {k: v for k, v in flags.items() if k != "init_from"},
                                 "train_seconds": round(seconds, 1), "curve": curve(arm_run, held_out, args.n)}
        print(f"{name}: {seconds:.0f} s, FD by step "
              + ", ".join(f"{p['step']}: {p['fd']:.3g}" for p in results["arms"][name]["curve"]), flush=True)
    target = results["arms"]["from scratch"]["curve"][-1]["fd"]
    results["target_fd"] = target
    for arm in results["arms"].values():
        arm["first_step_at_target"] = first_reaching(arm["curve"], target)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, json.dumps(results, indent=2) + "\n")
    plot(results["arms"], out.with_suffix(".png"), target)
    print(f"\n| arm | FD at step {args.every} | FD at step {args.steps} | first step at FD <= {target:.3g} |")
    print("|---|---|---|---|")
    for name, arm in results["arms"].items():
        print(f"| {name} | {arm['curve'][0]['fd']:.3g} | {arm['curve'][-1]['fd']:.3g} | "
              f"{arm['first_step_at_target'] or 'not reached'} |")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
