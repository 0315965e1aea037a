"""`ganforge serve` against its peers, one generator, one machine, one run: Triton Inference Server (the seed ensemble
as `ganforge export --format triton --triton-backend python` writes it, and its generator alone with a latent in)
and LitServe (batching on, the LitAPI below), all answering single-seed requests with the image's uint8 bytes.

    python benchmarks/peers.py [--model runs/bench-dcgan64] [--runner onnxruntime:fp32] [--connections 1,32,128]
                               [--seconds 10] [--rounds 2] [--variants "--in-flight 1;--in-flight 2 --threads 1"]

Each server runs alone on the machine, started and stopped in turn, in the opposite order in every other round; wrk
(`apt-get install wrk`) drives it at each connection count after a 2 s warm-up. The runner's offline batch-64 rate
is measured in this process before and after the servers. Every server runs the same ganforge runner (backend and
precision, --runner) with the same dynamic batching (up to 64, 2 ms), so the rows compare the serving stacks;
`ganforge serve` runs with its defaults and once more per --variants entry (its flags added).
Writes benchmarks/results/peers.json and prints the table (the median round per row, with every round's rate).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ganforge.benchmarks.backends_table import bench_run
from ganforge.benchmarks.bench import scenarios
from ganforge.benchmarks.bench.environment import environment
from ganforge.benchmarks.bench.http_server import serving
from ganforge.benchmarks.wrk import request_script, run_wrk, seed_script, wrk_missing
from ganforge.files import atomic_write_bytes
from ganforge.local_server import free_ports, wait_ready

RESULTS = Path(__file__).parent / "results" / "peers.json"
MAX_BATCH, DELAY_US = 64, 2000


try:  # the LitServe peer: a few lines of LitAPI (at module level: LitServe pickles it into its worker process)
    import litserve as ls
except ImportError:
    ls = None

if ls is not None:
    class Generator(ls.LitAPI):
        model, backend, precision = "", "onnxruntime", "fp32"  # set before the server starts

        def setup(self, device):
            from ganforge.serve.runtime.runners import open_runner

            self.runner = open_runner(self.backend, self.model, "cpu", self.precision)

        def decode_request(self, request):
            return int(request["seed"])

        def batch(self, seeds):
            from ganforge.latents import latents_for_seeds

            return latents_for_seeds(seeds, self.runner.info.z_dim)

        def predict(self, z):
            from ganforge.images import to_uint8_nhwc

            return to_uint8_nhwc(self.runner.infer(z))

        def unbatch(self, images):
            return list(images)

        def encode_response(self, image):
            from fastapi import Response

            return Response(content=image.tobytes(), media_type="application/octet-stream")


def litserve_main(model: str, port: int, backend: str, precision: str) -> None:
    """`python benchmarks/peers.py --litserve MODEL PORT BACKEND PRECISION`: the LitServe server (batching on)."""
    api = Generator(max_batch_size=MAX_BATCH, batch_timeout=DELAY_US / 1e6)
    api.model, api.backend, api.precision = model, backend, precision
    ls.LitServer(api, accelerator="cpu", workers_per_device=1).run(port=port, generate_client_file=False,
                                                                     log_level="warning")


@contextlib.contextmanager
def litserve(model: str, backend: str, precision: str):
    if ls is None:
        raise RuntimeError("LitServe is not installed: pip install litserve")
    port = free_ports(1)[0]
    child = subprocess.Popen([sys.executable, __file__, "--litserve", model, str(port), backend, precision],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(base + "/health", child, 180)
        except RuntimeError as error:
            raise RuntimeError(f"LitServe {error}: {child.stderr.read()[-500:] if child.poll() is not None else ''}") \
                from None
        yield base
    finally:  # LitServe's worker processes are its children: stop the whole group
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):  # workers that outlived the server
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        child.stderr.close()


@contextlib.contextmanager
def triton(model: str, runner: str, folder: Path):
    from ganforge.export.triton import TritonConfig, write_repository
    from ganforge.export.triton_server import TritonServer

    repo = write_repository(TritonConfig(model=model, out=str(folder / "repo"), generator="python", runner=runner,
                                         max_batch=MAX_BATCH, max_queue_delay_us=DELAY_US))
    with TritonServer(repo, timeout=300) as server:
        yield f"http://{server.http_address}"


def servers(model: str, backend: str, precision: str, z_dim: int, folder: Path, variants: list[str]) -> dict:
    """name -> (context manager giving a base URL, path, wrk script writer); ``variants``: `ganforge serve` flags,
    a row each beside its defaults."""
    uint8 = dict(binary=True, output="images_uint8")
    latent = np.random.default_rng(123).standard_normal(z_dim).astype(np.float32).round(6).tolist()
    z_body = {"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, z_dim], "data": latent}],
              "outputs": [{"name": "images_uint8", "parameters": {"binary_data": True}}]}
    runner = f"{backend}:{precision}"

    def ganforge(flags: str) -> tuple:
        return (lambda: serving(model, backend, precision, max_batch=MAX_BATCH, delay_us=DELAY_US,
                                extra_args=tuple(flags.split())),
                "/v2/models/generator/infer", lambda p: seed_script(p, **uint8))

    return {
        **{f"ganforge serve {flags}".strip(): ganforge(flags) for flags in ["", *variants]},
        "Triton seed ensemble": (lambda: triton(model, runner, folder), "/v2/models/ganforge/infer",
                                 lambda p: seed_script(p, shape=(1, 1), **uint8)),
        "Triton generator (z in)": (lambda: triton(model, runner, folder), "/v2/models/generator/infer",
                                    lambda p: request_script(p, z_body)),
        "LitServe": (lambda: litserve(model, backend, precision), "/predict",
                     lambda p: request_script(p, {"seed": 123456789})),
    }


def measure(url: str, connections: int, seconds: float, script: Path) -> dict:
    run_wrk(url, connections, 2, script)  # warm-up
    result = run_wrk(url, connections, seconds, script)
    errors = result["non_2xx"] + result["read_errors"] + result["timeouts"]
    return result | {"images_per_second": result["requests_per_second"], "errors": errors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/bench-dcgan64", help="run folder (made if missing) or .onnx")
    parser.add_argument("--runner", default="onnxruntime:fp32", help="the ganforge BACKEND:PRECISION every server "
                        "runs (onnxruntime or openvino)")
    parser.add_argument("--connections", default="1,32,128")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2, help="rounds over the servers, alternating their order")
    parser.add_argument("--servers", help="a comma-separated subset of the servers")
    parser.add_argument("--variants", default="--in-flight 1", help="`ganforge serve` flags measured beside its "
                        "defaults, a row each (';' between variants)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if wrk_missing():
        print(f"skipped: {wrk_missing()}")
        return 0
    backend, _, precision = args.runner.partition(":")
    precision = precision or "fp32"
    model = args.model
    if not model.endswith(".onnx"):
        model = scenarios.offline_for_model(str(bench_run(Path(model))), backend, "fp32", MAX_BATCH, 0.5)["model_path"]
    offline = scenarios.offline_for_model(model, backend, precision, MAX_BATCH, 3.0)
    connections = [int(c) for c in args.connections.split(",")]
    results = {"environment": environment(None), "model": model, "runner": f"{backend}:{precision}",
               "max_batch": MAX_BATCH, "max_queue_delay_us": DELAY_US, "offline": offline, "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        from ganforge.export.metadata import read_metadata

        variants = [v.strip() for v in args.variants.split(";") if v.strip()]
        table = servers(model, backend, precision, int(read_metadata(Path(model))["z_dim"]), Path(tmp), variants)
        names = [n for n in table if not args.servers or n in args.servers.split(",")]
        for round_index in range(args.rounds):
            for name in names if round_index % 2 == 0 else names[::-1]:
                start, path, write_script = table[name]
                script = write_script(Path(tmp) / "request.lua")
                with start() as base:
                    for c in connections:
                        row = measure(base + path, c, args.seconds, script)
                        results["rows"].setdefault(name, {}).setdefault(str(c), []).append(row)
                        print(f"round {round_index + 1} {name:<24} {c:>4} connections: "
                              f"{row['images_per_second']:8.0f} img/s  p99 {row['p99_us'] / 1000:6.1f} ms  "
                              f"errors {row['errors']}", flush=True)
    results["offline_after"] = scenarios.offline_for_model(model, backend, precision, MAX_BATCH, 3.0)
    summarise(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(args.out), json.dumps(results, indent=2) + "\n")
    print(format_table(results))
    print(f"wrote {args.out}")
    return 0


def summarise(results: dict) -> None:
    """The median round of each row, and the ratios the targets name."""
    offline = (results["offline"]["images_per_second"] + results["offline_after"]["images_per_second"]) / 2
    results["offline_mean"] = offline
    median = {}
    for name, counts in results["rows"].items():
        for c, runs in counts.items():
            middle = sorted(runs, key=lambda r: r["images_per_second"])[(len(runs) - 1) // 2]
            median.setdefault(name, {})[c] = middle | {"round_rates": [r["images_per_second"] for r in runs]}
    results["median"] = median
    ratios = {}
    for c in next(iter(median.values()), {}):
        peers = {n: rows[c] for n, rows in median.items() if not n.startswith("ganforge serve") and c in rows}
        best = max(peers, key=lambda n: peers[n]["images_per_second"]) if peers else None
        for name in [n for n in median if n.startswith("ganforge serve")]:
            ours = median[name].get(c)
            if ours and best:
                ratios[f"{name} / {best} at {c}"] = ours["images_per_second"] / peers[best]["images_per_second"]
                ratios[f"{name} p99 / {best} p99 at {c}"] = ours["p99_us"] / max(peers[best]["p99_us"], 1)
        if "Triton seed ensemble" in median and "Triton generator (z in)" in median:
            ratios[f"Triton seed ensemble / Triton generator at {c}"] = \
                median["Triton seed ensemble"][c]["images_per_second"] / \
                median["Triton generator (z in)"][c]["images_per_second"]
    results["ratios"] = ratios


def format_table(results: dict) -> str:
    counts = list(next(iter(results["median"].values()), {}))
    head = "| server | " + " | ".join(f"{c} conn. img/s (p50 / p99 ms)" for c in counts) + " |"
    lines = [f"{results['runner']}, offline batch {results['max_batch']}: {results['offline_mean']:.0f} img/s",
             head, "|---|" + "---|" * len(counts)]
    for name, rows in results["median"].items():
        cells = [f"{rows[c]['images_per_second']:.0f} ({rows[c]['p50_us'] / 1000:.1f} / {rows[c]['p99_us'] / 1000:.1f})"
                 for c in counts]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [f"{k}: {v:.2f}" for k, v in results["ratios"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--litserve":
        litserve_main(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        sys.exit(main())
