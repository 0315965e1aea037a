"""HTTP throughput of `ganforge serve` under wrk, against the same backend's offline rate, measured in one run.

    python benchmarks/http_wrk.py [--model runs/bench-dcgan64] [--backend auto] [--seconds 10] [--connections 32,128]
                                  [--threads N]

Resolves the backend (auto: what `--backend auto` picks here at batch 64), measures its offline batch-64 rate in
this process (before the servers and again after them; ratios use the mean), then starts `ganforge serve` with
that backend and precision and drives it with wrk: single-seed KServe v2 requests with binary FP32 output, JSON
FP32 output and binary UINT8 output at each connection count (and binary FP32 from one connection); the headline
count's rows --repeats times, the median run kept with every run's rate. Then each --variants server (`--workers
2`, `--http h11`, `--batch-gap-us 0`) on binary FP32. Each run also records where the CPU went per request
(cpu_account.py: the event loop, the worker threads, wrk, the rest) and the ceiling those costs allow with every
core busy. Writes benchmarks/results/http_wrk.json and prints the table. Skips with a clear reason where wrk is
missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from ganforge.benchmarks.backends_table import bench_run
from ganforge.benchmarks.bench import scenarios
from ganforge.benchmarks.bench.environment import environment
from ganforge.benchmarks.bench.http_server import serving_process
from ganforge.benchmarks.cpu_account import cpu_account, snapshot
from ganforge.benchmarks.wrk import run_wrk, seed_script, wrk_missing
from ganforge.export.onnx import use_inference_threads
from ganforge.files import atomic_write_bytes
from ganforge.serve.runtime.auto import AUTO, AutoConfig, choose

RESULTS = Path(__file__).parent / "results" / "http_wrk.json"
OUTPUTS = {"binary FP32": ("images", True), "JSON FP32": ("images", False), "binary UINT8": ("images_uint8", True)}
TARGETS = {"binary FP32": ("offline", 0.8), "JSON FP32": ("binary FP32", 0.5)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/bench-dcgan64", help="run folder or model (made if missing)")
    parser.add_argument("--backend", default=AUTO)
    parser.add_argument("--precision", default="fp32", help="with an explicit --backend")
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk duration per output kind")
    parser.add_argument("--connections", default="32,128", help="wrk connection counts, each with every output "
                        "kind; the largest is the headline (two max batches' worth: one batch forms while the "
                        "other computes)")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--variants", default="--workers 2;--http h11;--batch-gap-us 0", help="`ganforge serve` "
                        "flags (';' between variants) compared with the defaults on binary FP32 requests from one "
                        "connection and from each --connections count")
    parser.add_argument("--repeats", type=int, default=3, help="wrk runs of each headline row (the defaults at the "
                        "largest --connections): the median run is the row, the others its spread")
    parser.add_argument("--threads", type=int, help="inference threads, offline and in every server (`ganforge serve "
                        "--threads`; default: the runtime's, every core); fewer than the cores leave the event loop "
                        "and wrk cores of their own")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    if wrk_missing():
        print(f"skipped: {wrk_missing()}")
        return 0
    model = str(bench_run(Path(args.model))) if args.model == parser.get_default("model") else args.model
    threads = ("--threads", str(args.threads)) if args.threads else ()
    if args.threads:
        use_inference_threads(args.threads)
    backend, precision = args.backend, args.precision
    if backend == AUTO:
        choice = choose(AutoConfig(model=model, batch_size=args.max_batch, device=args.device))
        backend, precision = choice.backend, choice.precision
    offline = scenarios.offline_for_model(model, backend, precision, args.max_batch, 3.0, args.device)
    connections = sorted(int(c) for c in args.connections.split(","))
    headline = connections[-1]
    results = {"environment": environment(None), "model": model, "backend": backend, "precision": precision,
               "device": args.device, "asked_backend": args.backend, "max_batch": args.max_batch,
               "inference_threads": args.threads or "default",
               "connections": headline, "offline_batch": args.max_batch, "offline": offline, "runs": {}}
    binary = {"binary FP32": OUTPUTS["binary FP32"]}
    # (name, serve flags, [(connections, output kinds)]): the defaults with every output kind at every count (and
    # one connection: a lone client's latency), then each variant on binary FP32
    counts = sorted({1, *connections})
    servers = [("defaults", (), [(c, binary if c == 1 else OUTPUTS) for c in counts])]
    servers += [(flags, tuple(flags.split()), [(c, binary) for c in counts])
                for flags in filter(None, (v.strip() for v in args.variants.split(";")))]
    with tempfile.TemporaryDirectory() as tmp:
        for name, flags, plan in servers:
            runs = results["runs"].setdefault(name, {})
            with serving_process(offline["model_path"], backend, precision, args.device, max_batch=args.max_batch,
                                 extra_args=threads + flags) as (base, server):
                url = f"{base}/v2/models/generator/infer"
                for c, kinds in plan:
                    repeats = args.repeats if (name, c) == ("defaults", headline) else 1
                    for label, (output, binary_data) in kinds.items():
                        runs.setdefault(str(c), {})[label] = _median_run([_measure(
                            url, c, args.seconds, Path(tmp) / "seed.lua", output, binary_data, server.pid)
                            for _ in range(repeats)])
    # offline again once the servers are gone: the ratios use the mean of both, as the machine drifts meanwhile
    results["offline_after"] = scenarios.offline_for_model(model, backend, precision, args.max_batch, 3.0,
                                                           args.device)
    results["http"] = results["runs"]["defaults"][str(headline)]
    rates = {"offline": _offline_rate(results), **{k: v["images_per_second"] for k, v in results["http"].items()}}
    results["ratios"] = {f"{label} / {base}": rates[label] / rates[base] for label, (base, _) in TARGETS.items()}
    results["targets_met"] = {f"{label} / {base} >= {bound}": rates[label] / rates[base] >= bound
                              for label, (base, bound) in TARGETS.items()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(args.out), json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"wrote {args.out}")
    return 0


def _median_run(runs: list[dict]) -> dict:
    """The run with the median rate (its latencies and CPU account with it), and every run's rate."""
    middle = sorted(runs, key=lambda r: r["images_per_second"])[(len(runs) - 1) // 2]
    return middle | {"repeat_rates": [r["images_per_second"] for r in runs]} if len(runs) > 1 else middle


def _offline_rate(results: dict) -> float:
    return (results["offline"]["images_per_second"] + results["offline_after"]["images_per_second"]) / 2


def _measure(url: str, connections: int, seconds: float, script: Path, output: str, binary: bool,
             server_pid: int) -> dict:
    """wrk at ``connections`` for ``seconds`` after a 2 s warm-up, with the CPU time it cost (cpu_account)."""
    seed_script(script, binary=binary, output=output)
    run_wrk(url, connections, 2, script)  # warm-up
    before = snapshot(server_pid)
    result = run_wrk(url, connections, seconds, script)
    result["cpu"] = cpu_account(before, snapshot(server_pid), result["requests"])
    result["images_per_second"] = result["requests_per_second"]  # one seed per request
    result["ceiling_images_per_second"] = result["images_per_second"] / max(result["cpu"]["busy_fraction"], 1e-9)
    return result


def table(results: dict) -> str:
    offline = _offline_rate(results)
    lines = [f"{results['backend']} {results['precision']} (asked: {results['asked_backend']}; inference threads: "
             f"{results.get('inference_threads', 'default')}), offline batch "
             f"{results['offline_batch']}: {offline:.0f} img/s (mean of before and after); wrk, single-seed requests "
             "(img/s: the median of the repeats, their range in brackets); CPU per request in us "
             "(event loop / worker threads: inference, JSON encoding / wrk / rest); busy: of all cores; ceiling: "
             "the rate at these costs with every core busy",
             "| serve flags | connections | output | img/s | % of offline | p50 ms | p99 ms | non-2xx | CPU us per "
             "request | busy | ceiling (% of offline) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in results["runs"].items():
        for connections, rows in runs.items():
            for label, r in rows.items():
                spread = f" ({min(r['repeat_rates']):.0f}-{max(r['repeat_rates']):.0f})" if "repeat_rates" in r else ""
                lines.append(f"| {name} | {connections} | {label} | {r['images_per_second']:.0f}{spread} | "
                             f"{100 * r['images_per_second'] / offline:.0f}% | {r['p50_us'] / 1e3:.1f} | "
                             f"{r['p99_us'] / 1e3:.1f} | {r['non_2xx']} | {_cpu(r)} | "
                             f"{100 * r['cpu']['busy_fraction']:.0f}% | {r['ceiling_images_per_second']:.0f} "
                             f"({100 * r['ceiling_images_per_second'] / offline:.0f}%) |")
    lines += [f"{k}: {v:.2f}" for k, v in results["ratios"].items()]
    return "\n".join(lines)


def _cpu(result: dict) -> str:
    cpu = result["cpu"]
    return " / ".join(f"{cpu[k]:.0f}" for k in ("event_loop_us", "worker_threads_us", "load_generator_us", "other_us"))


if __name__ == "__main__":
    sys.exit(main())
