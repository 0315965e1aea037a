"""The table and the picture of recipe sweeps: the runs of one or more `recipe_sweep.py` results files (of one data
set), a row per candidate with the mean and range over its seeds of each run's last evaluation, and how many of
the seeds it shares with the first candidate it beats that one on.

    python benchmarks/recipe_summary.py benchmarks/results/recipes/stacked-digits-residual-seeds1-3.json \\
        benchmarks/results/recipes/stacked-digits-residual.json --plot stacked.png
    python benchmarks/recipe_summary.py benchmarks/results/recipes/digits-unlabelled-residual*.json \\
        --candidates residual-w8-unlabelled-s5250-lr2e-3-b0,dcgan-unlabelled --metrics fd,recognised

A candidate and seed found in two files is an error (one run per seed is what the mean means). The picture has a
panel for each of the first two metrics, the candidates' values seed by seed.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
from pathlib import Path

from ganforge.errors import UserError

METRICS = ("fd", "recognised", "precision", "recall", "kid")
LOWER_IS_BETTER = {"fd", "kid", "mode_kl", "class_kl", "train_seconds"}
PERCENT = {"recognised"}
COUNTS = {"modes", "classes", "train_seconds"}


def collect(files: list[Path]) -> tuple[str, dict[str, dict[int, dict]]]:
    """The data set and candidate -> seed -> the run's last evaluation (with its ``train_seconds``)."""
    data, runs, where = None, {}, {}
    for file in files:
        try:
            results = json.loads(file.read_text())
        except (OSError, ValueError) as error:
            raise UserError(f"{file}: not a recipe_sweep.py results file ({error})") from None
        if not isinstance(results, dict) or "runs" not in results:
            raise UserError(f"{file}: not a recipe_sweep.py results file (no 'runs')")
        if data is not None and results.get("data") != data:
            raise UserError(f"{file}: its runs are on {results.get('data')!r}, the others on {data!r}")
        data = results.get("data")
        for run in results["runs"]:
            key = (run["candidate"], run["seed"])
            if key in where:
                raise UserError(f"{run['candidate']} seed {run['seed']} is in both {where[key]} and {file}")
            where[key] = file
            runs.setdefault(run["candidate"], {})[run["seed"]] = {**run["evaluations"][-1],
                                                                  "train_seconds": run["train_seconds"]}
    return data, runs


def chosen(runs: dict[str, dict[int, dict]], names: list[str]) -> dict[str, dict[int, dict]]:
    missing = [name for name in names if name not in runs]
    if missing:
        raise UserError(f"no runs of {', '.join(missing)} in these files (they hold {', '.join(runs)})")
    return {name: runs[name] for name in names}


def _scale(metric: str) -> int:
    return 100 if metric in PERCENT else 1


def _spread(values: list[float], metric: str) -> str:
    scale, digits = _scale(metric), 1 if metric in PERCENT else 0 if metric in COUNTS else 3 if metric == "kid" else 2
    # + 0.0: a value that rounds to -0 shows as 0
    mean, low, high = (round(v * scale, digits) + 0.0 for v in (statistics.mean(values), min(values), max(values)))
    unit = "%" if metric in PERCENT else ""
    text = f"{mean:.{digits}f}{unit}"
    return text if len(values) == 1 else f"{text} ({low:.{digits}f}-{high:.{digits}f})"


def rows(runs: dict[str, dict[int, dict]], metrics: list[str]) -> list[dict]:
    """A row per candidate: its seeds, each metric's mean (range), and against the first candidate, per metric, the
    seeds both ran with that metric and on how many of them this one is better (``wins``; ties are no win)."""
    absent = [m for m in metrics if not any(m in run for seeds in runs.values() for run in seeds.values())]
    if absent:
        raise UserError(f"no run has {', '.join(absent)} in its evaluations")
    first = next(iter(runs.values()))
    table = []
    for name, seeds in runs.items():
        row = {"candidate": name, "seeds": sorted(seeds)}
        for metric in [*metrics, "train_seconds"]:
            values = [run[metric] for run in seeds.values() if metric in run]
            row[metric] = _spread(values, metric) if values else "-"
        if seeds is not first:
            for metric in metrics:
                shared = [s for s in set(seeds) & set(first) if metric in seeds[s] and metric in first[s]]
                sign = -1 if metric in LOWER_IS_BETTER else 1
                row[f"{metric}_wins"] = (sum(sign * (seeds[s][metric] - first[s][metric]) > 0 for s in shared),
                                         len(shared))
        table.append(row)
    return table


def markdown(table: list[dict], metrics: list[str]) -> str:
    head = ["candidate", "seeds", *metrics, "seconds", "better than the first, seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table:
        wins = ", ".join(f"{m} {row[f'{m}_wins'][0]}/{row[f'{m}_wins'][1]}" for m in metrics if f"{m}_wins" in row)
        cells = [row["candidate"], ",".join(map(str, row["seeds"])), *(row[m] for m in metrics),
                 row["train_seconds"], wins]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def plot(data: str, runs: dict[str, dict[int, dict]], metrics: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ganforge.files import atomic_write_bytes

    figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2), squeeze=False)
    for axis, metric in zip(axes[0], metrics):
        for name, seeds in runs.items():
            order = sorted(s for s in seeds if metric in seeds[s])
            axis.plot(order, [seeds[s][metric] * _scale(metric) for s in order], "o-", label=name)
        better = "lower" if metric in LOWER_IS_BETTER else "higher"
        axis.set(title=f"{metric}{' (%)' if metric in PERCENT else ''}, {better} is better", xlabel="seed")
        axis.xaxis.get_major_locator().set_params(integer=True)
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"{data}: the last evaluation of each run")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="recipe_sweep.py results files of one data set")
    parser.add_argument("--candidates", help="these candidates only, in this order (the first is the baseline)")
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--plot", type=Path, help="write the picture here (PNG)")
    args = parser.parse_args(argv)
    metrics = args.metrics.split(",")
    try:
        data, runs = collect(args.files)
        runs = chosen(runs, args.candidates.split(",") if args.candidates else list(runs))
        table = rows(runs, metrics)
    except UserError as error:
        print(f"recipe_summary.py: {error}", file=sys.stderr)
        return 2
    print(f"{data}: the last evaluation of each run, mean (range) over seeds")
    print(markdown(table, metrics))
    if args.plot:
        plot(data, runs, metrics[:2], args.plot)
        print(f"picture: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
