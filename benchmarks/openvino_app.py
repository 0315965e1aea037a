"""ganforge's OpenVINO rows against OpenVINO's own `benchmark_app` (it ships in the openvino wheel), on the same model,
batch and precision, alternated in one run.

    python benchmarks/openvino_app.py [--model runs/bench-dcgan64] [--precisions fp32,int8] [--seconds 10]
                                      [--rounds 3]

For each precision the model benchmark_app reads is the one ganforge's runner compiles: the exported fp32 ONNX, or
for int8 the NNCF-quantized model the runner makes at load, saved as OpenVINO IR. benchmark_app runs with the
throughput hint and the batch in the input shape (`-shape z[64,Z]`; its "Throughput" counts batches); ganforge's
rate is `ganforge bench`'s offline scenario on the runner (`--copies N`: that many batches in flight, on the runner
and its copies, as `ganforge bench` measures OpenVINO and `ganforge serve --in-flight N` serves). Rounds alternate
the order. Writes benchmarks/results/openvino_app.json and prints the table (medians with every round's rate).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from ganforge.benchmarks.backends_table import bench_run
from ganforge.benchmarks.bench import scenarios
from ganforge.benchmarks.bench.environment import environment
from ganforge.export.metadata import read_metadata
from ganforge.files import atomic_write_bytes
from ganforge.serve.runtime.runners import open_runner

RESULTS = Path(__file__).parent / "results" / "openvino_app.json"
BATCH = 64


def benchmark_app(model: Path, z_dim: int, seconds: float) -> dict:
    tool = Path(sys.executable).parent / "benchmark_app"
    out = subprocess.run([str(tool), "-m", str(model), "-d", "CPU", "-hint", "throughput", "-t", f"{seconds:.0f}",
                          "-shape", f"z[{BATCH},{z_dim}]"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"Throughput:\s+([\d.]+)\s+FPS", out)
    streams = re.search(r"NUM_STREAMS:\s+(\d+)", out)
    if not found:
        raise RuntimeError(f"benchmark_app printed no throughput: {out[-400:]}")
    return {"images_per_second": float(found.group(1)) * BATCH, "streams": int(streams.group(1)) if streams else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/bench-dcgan64", help="run folder (made if missing) or .onnx")
    parser.add_argument("--precisions", default="fp32,int8")
    parser.add_argument("--copies", default="1,2", help="ganforge rows: runners with a batch in flight each")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    model = args.model
    if not model.endswith(".onnx"):
        model = scenarios.offline_for_model(str(bench_run(Path(model))), "openvino", "fp32", BATCH, 0.5)["model_path"]
    z_dim = int(read_metadata(Path(model))["z_dim"])
    counts = [int(c) for c in args.copies.split(",")]
    rows: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        import openvino as ov

        runners, files = {}, {}
        for precision in args.precisions.split(","):
            runners[precision] = open_runner("openvino", model, "cpu", precision)
            files[precision] = Path(model)
            if precision != "fp32":  # the model the runner compiled, as IR for benchmark_app
                files[precision] = Path(tmp) / f"{precision}.xml"
                ov.save_model(runners[precision].model, str(files[precision]))
        plan = [(p, who) for p in runners for who in ["benchmark_app", *[f"ganforge x{c}" for c in counts]]]
        for round_index in range(args.rounds):
            for precision, who in plan if round_index % 2 == 0 else plan[::-1]:
                if who == "benchmark_app":
                    row = benchmark_app(files[precision], z_dim, args.seconds)
                else:
                    row = scenarios.offline(runners[precision], BATCH, args.seconds,
                                            in_flight=int(who.split("x")[1]))
                rows.setdefault(f"{precision} {who}", []).append(row)
                print(f"round {round_index + 1} {precision} {who:<14} {row['images_per_second']:8.0f} img/s",
                      flush=True)
    results = {"environment": environment(None), "model": model, "batch": BATCH, "seconds": args.seconds,
               "rows": rows, "median": {k: statistics.median(r["images_per_second"] for r in v)
                                        for k, v in rows.items()}}
    results["ratios"] = {f"{k} / {k.split()[0]} benchmark_app": v / results["median"][f"{k.split()[0]} benchmark_app"]
                         for k, v in results["median"].items() if "ganforge" in k}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(args.out), json.dumps(results, indent=2) + "\n")
    for name, value in results["median"].items():
        spread = [round(r["images_per_second"]) for r in rows[name]]
        print(f"{name:<28} {value:8.0f} img/s  rounds {spread}")
    for name, value in results["ratios"].items():
        print(f"{name}: {value:.3f}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
