"""The README's performance table: DCGAN-64 (3 x 64 x 64, width 64, z 100) on every backend.

    python benchmarks/backends_table.py [--steps 300] [--min-duration 3]

Trains a DCGAN-64 run (once; see bench_run), then runs `ganforge bench` over
all backends, fp32/fp16/int8, batch sizes 1/8/64/256 and the three scenarios. Writes
benchmarks/results/backends/{bench.json, bench.md, throughput.png, latency.png} and prints the table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ganforge.benchmarks.bench.report import table, write_reports
from ganforge.benchmarks.bench.run import BenchConfig, bench
from ganforge.train.config import TrainConfig
from ganforge.train.loop import train

RESULTS = Path(__file__).parent / "results" / "backends"


def bench_run(run: Path, steps: int = 300) -> Path:
    """The benchmarks' DCGAN-64 run folder, trained on the bundled shapes if it is not there yet. Speed does
    not depend on how well it is trained, but accuracy (int8's PSNR, and so --backend auto's choice) does: a
    few hundred steps give weights with a trained model's spread, 20 do not."""
    if not (run / "checkpoints").is_dir():
        train(TrainConfig(data="shapes", model="dcgan", resolution=64, width=64, z_dim=100, steps=steps,
                          out=str(run), quiet=True, device="cpu", checkpoint_every=steps, eval_every=0,
                          sample_every=steps))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/bench-dcgan64", help="reuse or create this run folder")
    parser.add_argument("--steps", type=int, default=300, help="training steps, if the run must be made")
    parser.add_argument("--min-duration", type=float, default=3.0)
    parser.add_argument("--backends", default="torch,torch-compile,onnxruntime,openvino,aoti,tensorrt")
    parser.add_argument("--precisions", default="fp32,fp16,int8")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    run = bench_run(Path(args.run), args.steps)
    config = BenchConfig(model=str(run), out=args.out, backends=tuple(args.backends.split(",")),
                         precisions=tuple(args.precisions.split(",")), min_duration=args.min_duration,
                         server_duration=args.min_duration, latency_bound_ms=100.0)
    report = bench(config)
    write_reports(report, Path(args.out))
    print(table(report))


if __name__ == "__main__":
    main()
