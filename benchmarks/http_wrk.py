"""HTTP throughput of `ganforge serve` under wrk, against the same backend's offline rate, measured in one run.

    python benchmarks/http_wrk.py [--model runs/bench-dcgan64] [--backend auto] [--seconds 10] [--connections 32]

Resolves the backend (auto: what `--backend auto` picks here at batch 64), measures its offline batch-64 rate in
this process, then starts `ganforge serve` with that backend and precision and drives it with wrk: single-seed
KServe v2 requests with binary FP32 output, JSON FP32 output and binary UINT8 output; then again with
`--workers 2` and with the h11 parser instead of httptools (binary FP32). Writes benchmarks/results/http_wrk.json
and prints the table. Skips with a clear reason where wrk is missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ganforge.benchmarks import scenarios
from ganforge.benchmarks.backends_table import bench_run
from ganforge.benchmarks.environment import environment
from ganforge.benchmarks.http_server import serving
from ganforge.benchmarks.wrk import run_wrk, seed_script, wrk_missing
from ganforge.files import atomic_write_bytes
from ganforge.serve.auto import AUTO, AutoConfig, choose

RESULTS = Path(__file__).parent / "results" / "http_wrk.json"
OUTPUTS = {"binary FP32": ("images", True), "JSON FP32": ("images", False), "binary UINT8": ("images_uint8", True)}
TARGETS = {"binary FP32": ("offline", 0.8), "JSON FP32": ("binary FP32", 0.5)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/bench-dcgan64", help="run folder or model (made if missing)")
    parser.add_argument("--backend", default=AUTO)
    parser.add_argument("--precision", default="fp32", help="with an explicit --backend")
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration per output kind")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--workers", default="1,2", help="`ganforge serve --workers` values to compare on binary "
                        "FP32 requests (the first also runs every output kind)")
    parser.add_argument("--http", default="httptools,h11", help="`ganforge serve --http` parsers to compare on "
                        "binary FP32 requests (the first also runs every output kind and the --workers values)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if wrk_missing():
        print(f"skipped: {wrk_missing()}")
        return 0
    model = str(bench_run(Path(args.model))) if args.model == parser.get_default("model") else args.model
    backend, precision = args.backend, args.precision
    if backend == AUTO:
        choice = choose(AutoConfig(model=model, batch_size=args.max_batch))
        backend, precision = choice.backend, choice.precision
    offline = scenarios.offline_for_model(model, backend, precision, args.max_batch, 3.0)
    results = {"environment": environment(None), "model": model, "backend": backend, "precision": precision,
               "asked_backend": args.backend, "max_batch": args.max_batch, "connections": args.connections,
               "offline_batch": args.max_batch, "offline": offline, "http": {}}
    counts = [int(n) for n in args.workers.split(",")]
    parsers = args.http.split(",")
    # (workers, parser, output kinds): the first server runs every kind, the others binary FP32 only
    servers = [(counts[0], parsers[0], OUTPUTS)]
    servers += [(n, parsers[0], {"binary FP32": OUTPUTS["binary FP32"]}) for n in counts[1:]]
    servers += [(counts[0], p, {"binary FP32": OUTPUTS["binary FP32"]}) for p in parsers[1:]]
    results["workers"], results["parsers"] = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for count, http, kinds in servers:
            with serving(offline["model_path"], backend, precision, max_batch=args.max_batch,
                         extra_args=("--workers", str(count), "--http", http)) as base:
                url = f"{base}/v2/models/generator/infer"
                for label, (output, binary) in kinds.items():
                    script = seed_script(Path(tmp) / "seed.lua", binary=binary, output=output)
                    run_wrk(url, args.connections, 2, script)  # warm-up
                    result = run_wrk(url, args.connections, args.seconds, script)
                    result["images_per_second"] = result["requests_per_second"]  # one seed per request
                    if (count, http) == (counts[0], parsers[0]):
                        results["http"][label] = result
                    if label == "binary FP32" and http == parsers[0]:
                        results["workers"][str(count)] = result
                    if label == "binary FP32" and count == counts[0]:
                        results["parsers"][http] = result
    rates = {"offline": offline["images_per_second"], **{k: v["images_per_second"] for k, v in results["http"].items()}}
    results["ratios"] = {f"{label} / {base}": rates[label] / rates[base] for label, (base, _) in TARGETS.items()}
    results["targets_met"] = {f"{label} / {base} >= {bound}": rates[label] / rates[base] >= bound
                              for label, (base, bound) in TARGETS.items()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(args.out), json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"wrote {args.out}")
    return 0


def table(results: dict) -> str:
    offline = results["offline"]["images_per_second"]
    lines = [f"{results['backend']} {results['precision']} (asked: {results['asked_backend']}), offline batch "
             f"{results['offline_batch']}: {offline:.0f} img/s; wrk, {results['connections']} connections, "
             "single-seed requests", "| output | img/s | % of offline | p50 ms | p90 ms | p99 ms | non-2xx |",
             "|---|---|---|---|---|---|---|"]
    for label, r in results["http"].items():
        lines.append(f"| {label} | {r['images_per_second']:.0f} | {100 * r['images_per_second'] / offline:.0f}% | "
                     f"{r['p50_us'] / 1e3:.1f} | {r['p90_us'] / 1e3:.1f} | {r['p99_us'] / 1e3:.1f} | {r['non_2xx']} |")
    lines += [f"{k}: {v:.2f}" for k, v in results["ratios"].items()]
    lines += [f"serve --workers {n}: binary FP32 {r['images_per_second']:.0f} img/s, p99 {r['p99_us'] / 1e3:.1f} ms"
              for n, r in results.get("workers", {}).items()]
    lines += [f"serve --http {name}: binary FP32 {r['images_per_second']:.0f} img/s, p99 {r['p99_us'] / 1e3:.1f} ms"
              for name, r in results.get("parsers", {}).items()]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
