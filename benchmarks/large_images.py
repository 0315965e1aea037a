"""The residual model at 256 px through the pipeline: export and verification (time, peak memory, errors) and the
run every other benchmark of large images uses.

    python benchmarks/large_images.py [--run runs/bench-residual256] [--resolution 256] [--width 16]
                                      [--precisions fp32,fp16,int8]

1. Makes the run once (reused): 64 PNGs of random coloured shapes at --resolution px, and `ganforge train` of the
   residual model on that folder for 2 steps (speed and memory do not depend on training).
2. The export of that run in each precision (what `ganforge export` makes), each in a child process of its own:
   its wall time, peak resident memory (the child's ru_maxrss) and what the verification compared (batches, max
   abs error).
Writes benchmarks/results/residual256/export.json and prints a table. Then, on the same run:

    ganforge bench runs/bench-residual256 --precisions fp32,bf16,int8 --scenarios offline --batch-sizes 1,16 \\
        --min-duration 2 --out benchmarks/results/residual256
    python benchmarks/sample_e2e.py --model runs/bench-residual256 --backends openvino:int8 --images 2000 \\
        --batch-size 16 --out benchmarks/results/residual256/sample_e2e.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ganforge.benchmarks.bench.environment import environment
from ganforge.benchmarks.data_cache import measured_child, write_photos
from ganforge.files import atomic_write_bytes

RESULTS = Path(__file__).parent / "results" / "residual256" / "export.json"


def make_run(run: Path, resolution: int, width: int) -> Path:
    """The benchmark run: the residual model trained 2 steps on 64 PNGs at ``resolution`` px (made once)."""
    if (run / "checkpoints").is_dir():
        return run
    from ganforge.train.config import TrainConfig
    from ganforge.train.loop import train

    folder = run.parent / f"{run.name}-photos"
    write_photos(folder, 64, resolution)
    return train(TrainConfig(data=f"folder:{folder}", model="residual", resolution=resolution, width=width,
                             steps=2, batch_size=8, out=str(run), quiet=True, device="cpu", precision="fp32",
                             eval_every=0, sample_every=2, checkpoint_every=2))


def export_child(run: Path, precision: str, out: Path) -> dict:
    """`export()` of the run (as `ganforge export RUN --precision P` makes it) in a child process: wall time, peak
    resident memory, what the verification compared."""
    code = ("from ganforge.export.api import ExportConfig, export, to_json; "
            "print(to_json(export(ExportConfig(source=sys.argv[1], out=sys.argv[2], precision=sys.argv[3]))))")
    done, seconds, peak = measured_child(code, [str(run), str(out), precision])
    if done.returncode:
        return {"precision": precision, "status": "error", "seconds": round(seconds, 1),
                "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    result = json.loads(done.stdout)
    return {"precision": precision, "status": "ok", "seconds": round(seconds, 1), "peak_rss_mib": peak,
            "verified_batches": [c["batch_size"] for c in result["comparisons"]],
            "max_abs_error": max(c["max_abs"] for c in result["comparisons"]),
            "min_psnr_db": min(c["psnr_db"] for c in result["comparisons"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/bench-residual256", help="reuse or create this run folder")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--precisions", default="fp32,fp16,int8")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    run = make_run(Path(args.run), args.resolution, args.width)
    config = json.loads((run / "config.json").read_text())
    results = {"environment": environment(None), "run": str(run), "resolution": config["resolution"],
               "width": config["width"], "rows": []}
    with tempfile.TemporaryDirectory(prefix="ganforge-export-") as tmp:
        for precision in args.precisions.split(","):
            row = export_child(run, precision, Path(tmp) / f"g-{precision}.onnx")
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    print("| precision | seconds | peak memory MiB | verified batches | max abs error | min PSNR dB |")
    print("|---|---|---|---|---|---|")
    for row in results["rows"]:
        if row["status"] != "ok":
            print(f"| {row['precision']} | {row['seconds']} | - | - | {row['error']} | - |")
            continue
        batches = ", ".join(map(str, row["verified_batches"]))
        print(f"| {row['precision']} | {row['seconds']} | {row['peak_rss_mib']:,} | {batches} | "
              f"{row['max_abs_error']:.2g} | {row['min_psnr_db']:.1f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(args.out), json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
