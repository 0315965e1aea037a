"""Training step time of the residual model's block designs against the DCGAN recipe of a built-in set at 32 px.

    python benchmarks/residual_blocks.py [--data digits] [--steps 8] [--repeats 3] [--threads 1] [--candidates A,B]

Each candidate trains with its fields over the recipe of ``--data`` (the digits': conditional, DiffAugment, batch
64), in fp32 as the recipe sweep trains; the step time is the median of ``--repeats`` timings of ``--steps`` steps
after 3 warm-up steps, candidates alternated in each repeat. "bottleneck" is R3GAN's block (twice the channels
inside, grouped 3x3 convolutions of 16 channels), made by replacing the shipped blocks' layers; "dense" is the
shipped block (one width, a dense 3x3). Writes benchmarks/results/residual_blocks.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

RESULTS = Path(__file__).parent / "results" / "residual_blocks.json"
CANDIDATES = {  # name -> (TrainConfig fields over the digits recipe, residual block design)
    "dcgan (recipe)": ({}, None),
    "residual w16 dense": ({"model": "residual", "width": 16}, "dense"),
    "residual w16 bottleneck": ({"model": "residual", "width": 16}, "bottleneck"),
    "residual w16 dense rpgan+R1+R2": ({"model": "residual", "width": 16, "loss": "rpgan", "r1": 0.1, "r2": 0.1},
                                       "dense"),
    "residual w16 dense R1": ({"model": "residual", "width": 16, "r1": 0.05}, "dense"),
    "residual w8 dense": ({"model": "residual", "width": 8}, "dense"),
    "residual w32 dense": ({"model": "residual", "width": 32}, "dense"),
    # D wider than G (--width-d), as the DCGAN recipe's D is on the stacked digits (width 64)
    "residual w8 d16": ({"model": "residual", "width": 8, "width_d": 16}, "dense"),
    "residual w16 d32": ({"model": "residual", "width": 16, "width_d": 32}, "dense"),
    # the architecture flags: BatchNorm in G (and D), no blocks at full size
    "residual w8 bn-g": ({"model": "residual", "width": 8, "batch_norm_g": True}, "dense"),
    "residual w8 bn-g+d": ({"model": "residual", "width": 8, "batch_norm_g": True, "batch_norm_d": True}, "dense"),
    "residual w16 no-full-size": ({"model": "residual", "width": 16, "full_size_blocks": 0}, "dense"),
    "residual w16 no-full-size bn-g": ({"model": "residual", "width": 16, "full_size_blocks": 0, "batch_norm_g": True},
                                       "dense"),
    "residual w16 no-full-size bn-g+d": ({"model": "residual", "width": 16, "full_size_blocks": 0,
                                          "batch_norm_g": True, "batch_norm_d": True}, "dense"),
}


def bottleneck(module: nn.Module) -> None:
    """Turn every shipped block into R3GAN's: 2x channels inside, grouped 3x3 (16 channels a group)."""
    from ganforge.train.models.residual import ResidualBlock, _conv

    for block in module.modules():
        if isinstance(block, ResidualBlock):
            channels = block.expand.in_channels
            hidden = 2 * channels
            block.expand = _conv(channels, hidden)
            block.spatial = nn.Conv2d(hidden, hidden, 3, padding=1, groups=max(1, hidden // 16))
            block.project = _conv(hidden, channels, scale=0.0, bias=False)
    module.to(memory_format=torch.channels_last)


def trainer_for(data: str, fields: dict, design: str | None):
    from ganforge.train.data import load_data
    from ganforge.train.precision import resolve_precision
    from ganforge.train.recipes import recipe_config
    from ganforge.train.trainer import Trainer

    config = recipe_config(data, device="cpu", precision="fp32", quiet=True, **fields).resolved()
    trainer = Trainer(config, load_data(config.data, config.resolution, config.seed),
                      resolve_precision(config.precision, config.device))
    if design == "bottleneck":
        for module in (trainer.generator, trainer.discriminator):
            bottleneck(module)
        trainer.optimizer_g = torch.optim.Adam(trainer.generator.parameters(), lr=config.lr_g, betas=config.betas)
        trainer.optimizer_d = torch.optim.Adam(trainer.discriminator.parameters(), lr=config.lr_d, betas=config.betas)
        trainer.generator_ema = copy.deepcopy(trainer.generator).requires_grad_(False)
    for _ in range(3):
        trainer.train_step()
    return trainer, sum(p.numel() for p in trainer.generator.parameters())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits", help="a built-in data set whose recipe the candidates train with")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--candidates", help="a comma-separated subset (the DCGAN recipe is always measured)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    names = ["dcgan (recipe)", *(n for n in args.candidates.split(",") if n != "dcgan (recipe)")] if args.candidates \
        else list(CANDIDATES)
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        parser.error(f"unknown candidates {unknown}: choose from {', '.join(CANDIDATES)}")
    torch.set_num_threads(args.threads)
    from ganforge.benchmarks.bench.environment import environment
    from ganforge.files import atomic_write_bytes

    trainers = {name: trainer_for(args.data, *CANDIDATES[name]) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(args.repeats):  # alternated: the machine's drift falls on every candidate alike
        for name, (trainer, _) in trainers.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                trainer.train_step()
            times[name].append((time.perf_counter() - start) / args.steps * 1000)
    baseline = statistics.median(times["dcgan (recipe)"])
    rows = []
    print(f"{'candidate':34} {'G params':>9} {'ms/step':>8} {'spread':>13} {'x dcgan':>8}")
    for name, (_, params) in trainers.items():
        median = statistics.median(times[name])
        rows.append({"candidate": name, "generator_parameters": params, "ms_per_step": round(median, 1),
                     "min": round(min(times[name]), 1), "max": round(max(times[name]), 1),
                     "relative_to_dcgan": round(median / baseline, 2), "fields": CANDIDATES[name][0],
                     "block": CANDIDATES[name][1]})
        print(f"{name:34} {params:>9,} {median:>8.0f} {min(times[name]):>6.0f}-{max(times[name]):<6.0f} "
              f"{median / baseline:>8.2f}")
    result = {"benchmark": "residual_blocks", "environment": environment(None), "data": args.data,
              "threads": args.threads, "steps": args.steps, "repeats": args.repeats, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(args.out), json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
