"""Quality of the default recipes: train `ganforge train --data D` (no other flags) over several seeds, evaluate each
run as `ganforge eval` does, and compare the mean with the targets and the published tables.

    python benchmarks/quality.py                      # grid, ring, stacked-digits, digits; 5 seeds each
    python benchmarks/quality.py --data digits-unlabelled,stacked-digits-unlabelled   # the labels unused
    python benchmarks/quality.py --data shapes-folder,shapes-folder-labelled --seeds 0,1  # a user's folder
    python benchmarks/quality.py --quick              # one seed each
    python benchmarks/quality.py --data ring --seeds 0,1 --set lr_g=3e-4 --set lr_d=3e-4 \\
        --out benchmarks/results/recipes/ring-lr3e-4.json      # a recipe candidate (the sweep)
    python benchmarks/quality.py --combine A.json,B.json --out C.json     # seeds run in two processes, as one
    python benchmarks/quality.py --combine A.json,B.json --replace --out C.json   # B's seeds run again, replacing A's

Writes benchmarks/results/quality.json (or --out) after every run, so a stopped run keeps what it measured; the
data sets not run keep their earlier entries, each with the machine and date it ran on. Each run's last sample grid
(the EMA generator's fixed seeds) is kept beside it: benchmarks/results/quality-grids/DATA-seedS.png.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ganforge.benchmarks.bench.environment import environment
from ganforge.errors import UserError
from ganforge.files import atomic_write_bytes
from ganforge.serve.evaluation.evaluate import EvalConfig, evaluate_model
from ganforge.train.loop import train
from ganforge.train.recipes import recipe_config
from ganforge.train.run_folder import read_records

DATA = ("grid", "ring", "stacked-digits", "digits")
# rows that train labelled data as if it had none (the self-conditional recipe), as PacGAN and VEEGAN did
UNLABELLED = {"digits-unlabelled": "digits", "stacked-digits-unlabelled": "stacked-digits"}
# rows that train on a folder of PNGs as a user would (the folder's own recipe), written from the shapes data: flat
# (no labels: self-conditional) or in one subfolder per class (labelled: conditional), at 32 px (the recipe's size)
# or 64 px (trained with --resolution 64, as a user with larger images would); each is measured against --data
# shapes at its size, so their numbers compare. Row: (labelled, resolution).
FOLDERS = {"shapes-folder": (False, 32), "shapes-folder-labelled": (True, 32),
           "shapes-folder-64": (False, 64), "shapes-folder-labelled-64": (True, 64)}
# target: (metric, comparison, bound) on the mean over seeds, and the training-time budget in seconds
TARGETS = {
    "grid": ([("modes_captured", ">=", 25), ("high_quality", ">=", 0.97), ("reverse_kl", "<=", 0.01)], 180),
    "ring": ([("modes_captured", ">=", 8), ("high_quality", ">=", 0.98), ("reverse_kl", "<=", 0.02)], 180),
    "stacked-digits": ([("modes", ">=", 990), ("mode_kl", "<=", 0.06)], 900),
    "digits": ([("recognised", ">=", 0.9), ("classes", ">=", 10), ("class_kl", "<=", 0.05)], 300),
    "digits-unlabelled": ([("recognised", ">=", 0.93), ("classes", ">=", 10), ("class_kl", "<=", 0.02),
                           ("fd", "<=", 0.5)], 300),
    "stacked-digits-unlabelled": ([("modes", ">=", 1000), ("mode_kl", "<=", 0.03)], 900),
}
# PacGAN (Lin et al. 2018) Tables 1 and 3, as quoted in ../shared/REFERENCE.md
PUBLISHED = {
    "grid": {"GAN": {"modes_captured": 17.3, "high_quality": 0.948, "reverse_kl": 0.70},
             "PacGAN4": {"modes_captured": 24.8, "high_quality": 0.936, "reverse_kl": 0.04}},
    "ring": {"GAN": {"modes_captured": 6.3, "high_quality": 0.982, "reverse_kl": 0.45},
             "PacGAN4": {"modes_captured": 7.8, "high_quality": 0.959, "reverse_kl": 0.07}},
    "stacked-digits": {"DCGAN": {"modes": 99.0, "mode_kl": 3.40}, "VEEGAN": {"modes": 150, "mode_kl": 2.95},
                       "PacDCGAN2": {"modes": 1000, "mode_kl": 0.06}},
}
PUBLISHED["stacked-digits-unlabelled"] = PUBLISHED["stacked-digits"]  # all unconditional: labels unused


def recipe_of(row: str, root: Path, **overrides):
    """The TrainConfig of a row: its data's recipe; for an *-unlabelled row the same data with labels ignored; for a
    folder row the recipe of a folder of the shapes written as PNGs."""
    if row in UNLABELLED:
        return recipe_config(UNLABELLED[row], labels="ignore", **overrides)
    if row in FOLDERS:
        labelled, resolution = FOLDERS[row]
        folder = shapes_folder(root / row, labelled, resolution)
        return recipe_config(f"folder:{folder}", **{"resolution": resolution, **overrides})
    return recipe_config(row, **overrides)


def shapes_folder(path: Path, labelled: bool, resolution: int = 32) -> Path:
    """The shapes data as PNG files, flat or in one subfolder per class (named so that their order is the labels')."""
    from PIL import Image

    from ganforge.train.data import load_data

    if path.is_dir():
        return path
    data = load_data("shapes", resolution, seed=0)
    for index, (image, label) in enumerate(zip(data.stream.images, data.labels.tolist())):
        folder = path / f"{label:02d}" if labelled else path
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{index:05d}.png")
    return path


def run_one(data: str, seed: int, overrides: dict, root: Path, grids: Path) -> dict:
    config = recipe_of(data, root, seed=seed, out=str(root / f"{data}-{seed}"), quiet=True, **overrides)
    start, cpu_start = time.perf_counter(), time.process_time()
    run = train(config)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    keep_last_grid(run, grids / f"{data}-seed{seed}.png")
    against = {"data": "shapes", "out": str(root / f"{data}-{seed}-eval")} if data in FOLDERS else {}
    result = evaluate_model(EvalConfig(model=str(run), quiet=True, **against))
    # CPU seconds beside wall seconds: the wall time of a run that shared the cores with other work is inflated,
    # its CPU time much less so
    return {"seed": seed, "train_seconds": round(seconds, 1), "train_cpu_seconds": round(cpu_seconds, 1),
            "steps": config.steps,
            "generated": result["generated"], "real": result["real"], "pseudo_classes": result["pseudo_classes"],
            "during_training": evaluations(run), "clusters_during_training": clusterings(run)}


def keep_last_grid(run: Path, path: Path) -> None:
    """Copy the run's last sample grid (samples/step-*.png) to ``path``: what the numbers look like."""
    last = max((run / "samples").glob("step-*.png"), default=None)
    if last is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, last.read_bytes())


def evaluations(run: Path) -> list[dict]:
    """The --eval-every evaluations of the run (EMA generator, fewer samples than the final one): the curve."""
    records = read_records((run / "metrics.jsonl").read_text())
    return [{"step": r["step"], **r["eval"]} for r in records if "eval" in r]


def clusterings(run: Path) -> list[dict]:
    """A self-conditioned run's pseudo-classes, the first ones and each refit (--recluster-every): their purity
    against the ignored labels, shares and the share of images that kept their class."""
    records = read_records((run / "metrics.jsonl").read_text())
    return [{"step": r["step"], "kept_class": r.get("kept_class"), "reason": r.get("reason"),
             **{k: r["clusters"][k] for k in ("features", "purity", "smallest_share", "largest_share")}}
            if "clusters" in r else {"step": r["step"], "reason": r.get("reason")}
            for r in records if "clusters" in r or "reclustered" in r]


def summarise(data: str, runs: list[dict]) -> dict:
    targets, budget = TARGETS.get(data, ([], None))
    keys = [k for k, v in runs[0]["generated"].items() if isinstance(v, (int, float))]
    mean = {k: float(np.mean([r["generated"][k] for r in runs if r["generated"][k] is not None] or [np.nan]))
            for k in keys}
    checks = {f"{m} {op} {bound}": (mean[m] >= bound if op == ">=" else mean[m] <= bound) for m, op, bound in targets}
    seconds = float(np.mean([r["train_seconds"] for r in runs]))
    if budget:
        checks[f"train seconds <= {budget}"] = seconds <= budget
    return {"seeds": len(runs), "mean": mean, "train_seconds_mean": seconds, "targets": checks,
            "all_met": all(checks.values()), "real": runs[0]["real"], "published": PUBLISHED.get(data, {})}


def parse_value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def table(results: dict) -> str:
    lines = ["| data | seeds | train s | modes | high quality / recognised | KL | FD | targets |", "|" + "---|" * 8]
    for data, entry in results["data"].items():
        s = entry.get("summary")
        if not s:
            continue
        m = s["mean"]
        modes = m.get("modes_captured", m.get("modes", m.get("classes")))
        share = m.get("high_quality", m.get("recognised"))
        kl = m.get("reverse_kl", m.get("mode_kl", m.get("class_kl")))
        fmt = lambda v, d: "-" if v is None or v != v else f"{v:.{d}f}"  # noqa: E731
        met = "all met" if s["all_met"] else "not met: " + ", ".join(k for k, ok in s["targets"].items() if not ok)
        lines.append(f"| {data} | {s['seeds']} | {s['train_seconds_mean']:.0f} | {fmt(modes, 1)} | "
                     f"{fmt(share, 3)} | {fmt(kl, 4)} | {fmt(m.get('fd'), 3)} | {met} |")
    return "\n".join(lines)


# what may differ between runs of one row: where it ran (the folder rows' PNGs live in each process's own temp dir)
RUN_FIELDS = ("data", "seed", "out")


def combine(paths: list[Path], replace: bool = False) -> dict:
    """The rows of several results files as one: each data set's runs from every file (seeds split over processes or
    machines), summarised again over all of them. Runs of one data set must have the same configuration (up to
    RUN_FIELDS) and not repeat a seed, unless ``replace``: then a seed in a later file replaces its run in the files
    before it (a seed run again after a fix; the replaced run's file is named in the replacing run's "replaces").
    Each file's machine stays with its runs."""
    results: dict = {"data": {}}
    for path in paths:
        rows = json.loads(path.read_text()).get("data")
        if not isinstance(rows, dict):
            raise UserError(f"{path}: not a results file of this script (no \"data\")")
        for data, entry in rows.items():
            missing = [key for key in ("config", "environment", "runs") if key not in entry]
            if missing:
                raise UserError(f"{path}: {data} has no {' or '.join(missing)} (written by an older version of this "
                                "script): run it again to combine it")
            config = {k: v for k, v in entry["config"].items() if k not in RUN_FIELDS}
            # a combined file's runs already carry their machine and file
            runs = [{"environment": entry["environment"], "source": path.name, **run} for run in entry["runs"]]
            if data not in results["data"]:
                results["data"][data] = {**entry, "config": config, "runs": runs}
                continue
            combined = results["data"][data]
            if config != combined["config"]:
                changed = sorted(k for k in config if config[k] != combined["config"].get(k))
                raise UserError(f"{path}: {data} ran with other settings than in the files before it "
                                f"({', '.join(changed)})")
            earlier = {run["seed"]: run for run in combined["runs"]}
            seeds = earlier.keys() & {run["seed"] for run in runs}
            if seeds and not replace:
                raise UserError(f"{path}: {data} seed {min(seeds)} is already in the files before it (--replace: "
                                "the later run replaces it)")
            for run in runs:
                if run["seed"] in seeds:
                    run["replaces"] = earlier[run["seed"]]["source"]
            combined["runs"] = [run for run in combined["runs"] if run["seed"] not in seeds] + runs
    for data, entry in results["data"].items():
        entry["runs"].sort(key=lambda run: run["seed"])
        entry["summary"] = summarise(data, entry["runs"])
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=",".join(DATA))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--quick", action="store_true", help="one seed (0) per data set")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="override a recipe field (a candidate for the sweep), e.g. --set lr_g=3e-4")
    parser.add_argument("--out", default="benchmarks/results/quality.json")
    parser.add_argument("--combine", metavar="FILE,FILE,...",
                        help="train nothing: write the runs of these results files as one (seeds run apart) to --out")
    parser.add_argument("--replace", action="store_true",
                        help="with --combine: a seed in a later file replaces its run in the files before it")
    args = parser.parse_args(argv)
    if args.combine:
        try:
            results = combine([Path(p) for p in args.combine.split(",")], args.replace)
        except (UserError, OSError, json.JSONDecodeError) as error:
            print(f"quality.py: {error}", file=sys.stderr)
            return 2
        atomic_write_bytes(Path(args.out), json.dumps(results, indent=2) + "\n")
        print(table(results))
        print(f"wrote {args.out}")
        return 0
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    overrides = {k: parse_value(v) for k, _, v in (item.partition("=") for item in args.set)}
    out = Path(args.out)
    grids = out.with_name(f"{out.stem}-grids")
    results = {"data": {}}
    if out.is_file():  # data sets not run now keep their earlier entries (each entry records its own machine)
        results["data"] = json.loads(out.read_text()).get("data", {})
    root = Path(tempfile.mkdtemp(prefix="ganforge-quality-"))
    try:
        for data in args.data.split(","):
            entry = results["data"][data] = {"environment": environment(None), "overrides": overrides,
                                             "config": recipe_of(data, root, **overrides).to_dict(), "runs": []}
            for seed in seeds:
                entry["runs"].append(run_one(data, seed, overrides, root, grids))
                entry["summary"] = summarise(data, entry["runs"])
                out.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(out, json.dumps(results, indent=2) + "\n")
                g = entry["runs"][-1]["generated"]
                print(f"{data} seed {seed}: {entry['runs'][-1]['train_seconds']:.0f}s "
                      + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in g.items()),
                      flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(table(results))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
