"""The recipe sweep: train candidate configurations over seeds, two runs at a time with one thread each, and
record every evaluation (step, modes, high quality, reverse KL, ...) with the wall time.

    python benchmarks/recipe_sweep.py --data ring --candidates CANDIDATES.json --seeds 0,1 \\
        --out benchmarks/results/recipes/ring.json

CANDIDATES.json maps a name to TrainConfig fields over the data's recipe, e.g.
``{"lr3e-4": {"lr_g": 3e-4, "lr_d": 3e-4}}``. The chosen values go into ganforge/train/recipes.py, and
benchmarks/quality.py then measures the recipe itself over 5 seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path


def run_candidate(job: tuple[str, str, dict, int, str]) -> dict:
    name, data, overrides, seed, out = job
    import torch

    torch.set_num_threads(1)
    from ganforge.benchmarks.quality import evaluations
    from ganforge.train.loop import train
    from ganforge.train.recipes import recipe_config

    values = {**overrides, "betas": tuple(overrides["betas"])} if "betas" in overrides else overrides
    config = recipe_config(data, seed=seed, out=out, quiet=True, device="cpu", precision="fp32", **values)
    start = time.perf_counter()
    run = train(config)
    return {"candidate": name, "seed": seed, "overrides": overrides, "train_seconds": time.perf_counter() - start,
            "evaluations": evaluations(run)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--candidates", required=True, help="JSON file: name -> TrainConfig fields")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", required=True)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    candidates = json.loads(Path(args.candidates).read_text())
    root = Path(tempfile.mkdtemp(prefix="ganforge-sweep-"))
    jobs = [(name, args.data, values, int(seed), str(root / f"{name}-{seed}"))
            for name, values in candidates.items() for seed in args.seeds.split(",")]
    from ganforge.benchmarks.bench.environment import environment
    from ganforge.files import atomic_write_bytes

    results = {"environment": environment(None), "data": args.data, "runs": []}
    with ProcessPoolExecutor(args.jobs) as pool:
        for result in pool.map(run_candidate, jobs):
            results["runs"].append(result)
            last = result["evaluations"][-1]
            print(f"{result['candidate']} seed {result['seed']}: {result['train_seconds']:.0f}s, last evaluation "
                  + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items()),
                  flush=True)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(Path(args.out), json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
