"""`ganforge sample` end to end against the same backend's offline rate, measured in one run.

    python benchmarks/sample_e2e.py [--model runs/bench-dcgan64] [--images 20000] [--backends auto,torch,onnxruntime]
                                    [--repeats 3] [--device cpu] [--threads N] [--in-flight 1,2]
                                    [--helper-priority idle,normal]

--backends takes backend names or backend:precision (e.g. torch:fp16 on a GPU; a plain name is fp32).

For each backend (auto: what `--backend auto` picks here), --repeats times: `sample()` of --images seeds into npz
shards (manifest, sha256s, atomic writes: the real command) timed from the first batch to the last shard on disk
(and, reported beside it, with the model load: OpenVINO int8 quantizes at load, a fixed cost of about 2 s), between
two measurements of the offline images/s at the sampling batch size; the ratio to their mean is taken within each
repeat, and the row reports the median repeat and the range, with the cores the process kept busy while sampling
(CPU time / wall time: 2.0 on 2 cores means no idle core left to hide more work in). Also times, alone, each piece
of the helper thread's work per batch (latents, uint8 conversion, sha256, CRC32): what sampling adds to inference.
--in-flight N[,M]: batches computing at once, offline and in `sample()` alike (default: the backend's own, as
`ganforge sample` keeps them); with several, each repeat runs them in turn and each gets a row. --helper-priority
idle,normal compares the sampler's helper thread at idle priority (its default on Linux) with the default priority,
the same way.
Writes benchmarks/results/sample_e2e.json and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from ganforge.benchmarks.backends_table import bench_run
from ganforge.benchmarks.bench import scenarios
from ganforge.benchmarks.bench.environment import environment
from ganforge.export.onnx import use_inference_threads
from ganforge.files import atomic_write_bytes
from ganforge.serve.runtime.auto import AUTO, AutoConfig, choose
from ganforge.serve.sampling import sampler
from ganforge.serve.sampling.sampler import SampleConfig, sample
from ganforge.timing import measure

RESULTS = Path(__file__).parent / "results" / "sample_e2e.json"
timings: list[tuple[float, float]] = []


def _timed_shards(*args, **kwargs):
    """sampler._run_shards, timed: from the first batch to the last shard on disk (the model already loaded); wall
    seconds and this process's CPU seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    result = _run_shards(*args, **kwargs)
    timings.append((time.perf_counter() - start, time.process_time() - cpu))
    return result


_run_shards = sampler._run_shards  # _repeat puts _timed_shards in its place while it samples
TARGET = 0.9  # end to end >= 90% of offline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/bench-dcgan64", help="run folder or model (made if missing)")
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backends", default="auto,torch,onnxruntime")
    parser.add_argument("--repeats", type=int, default=3, help="offline + sample pairs per backend (median)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (on a GPU the sampler converts to uint8 there)")
    parser.add_argument("--threads", type=int, help="inference threads for offline and sample alike (default: the "
                        "runtime's, every core); fewer than the cores leave the helper thread a core of its own")
    parser.add_argument("--in-flight", help="comma-separated batches in flight to compare (default: the backend's)")
    parser.add_argument("--helper-priority", default="idle", help="comma-separated: idle (the sampler's default), "
                        "normal; with both, each repeat runs both and each gets a row")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    priorities = args.helper_priority.split(",")
    if not set(priorities) <= {"idle", "normal"}:
        parser.error("--helper-priority takes idle and/or normal")
    counts = [int(n) for n in args.in_flight.split(",")] if args.in_flight else [None]
    settings = [(n, priority) for n in counts for priority in priorities]
    if args.repeats < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--repeats and --threads must be at least 1")
    if args.threads:
        use_inference_threads(args.threads)
    model = str(bench_run(Path(args.model))) if args.model == parser.get_default("model") else args.model
    results = {"environment": environment(None), "model": model, "images": args.images, "device": args.device,
               "batch_size": args.batch_size, "inference_threads": args.threads or "default",
               "helper_ms_per_batch": helper_costs(model, args.batch_size), "rows": []}
    print("helper thread per batch of", args.batch_size, "(ms, alone):",
          ", ".join(f"{k} {v:.2f}" for k, v in results["helper_ms_per_batch"].items()))
    for asked in args.backends.split(","):
        backend, _, precision = asked.partition(":")
        precision = precision or "fp32"
        if backend == AUTO:
            choice = choose(AutoConfig(model=model, batch_size=args.batch_size, device=args.device))
            backend, precision = choice.backend, choice.precision
        by_setting: dict = {setting: [] for setting in settings}
        for _ in range(args.repeats):  # the settings alternate within each repeat
            for setting in settings:
                by_setting[setting].append(_repeat(model, backend, precision, args.images, args.batch_size,
                                                   args.device, setting))
        for (n, priority), repeats in by_setting.items():
            ordered = sorted(repeats, key=lambda r: r["fraction_of_offline"])
            fractions = [ordered[0]["fraction_of_offline"], ordered[-1]["fraction_of_offline"]]
            row = {"asked": asked, "backend": backend, "precision": precision, "in_flight": n or "default",
                   "helper_priority": priority, **ordered[(len(ordered) - 1) // 2],
                   "fraction_of_offline_range": fractions, "repeats": repeats}
            results["rows"].append(row)
            print(f"{asked:<12} {backend} {precision}{f', {n} in flight' if n else ''}, helper {priority}: offline "
                  f"{row['offline_images_per_second']:.0f} img/s, sample {row['sample_images_per_second']:.0f} img/s "
                  f"= {100 * row['fraction_of_offline']:.0f}% ({row['cores_busy']:.2f} cores busy; median of "
                  f"{len(repeats)}, {100 * fractions[0]:.0f}-{100 * fractions[-1]:.0f}%; target {100 * TARGET:.0f}%); "
                  f"with the model load ({row['load_seconds']:.1f} s) {row['sample_images_per_second_with_load']:.0f} "
                  "img/s", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(args.out), json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def helper_costs(model: str, batch_size: int, seconds: float = 0.5) -> dict[str, float]:
    """Median milliseconds of each piece of the sampler's helper work for one batch, alone on an idle machine
    (``timing.measure``: warmed up, then timed call by call for about ``seconds``): the batch's latents, the uint8
    NHWC conversion, and the sha256 and CRC32 of its bytes (the npz shard's two sums)."""
    import hashlib
    import statistics
    import zlib

    import numpy as np

    from ganforge.export.metadata import read_metadata
    from ganforge.images import to_uint8_nhwc
    from ganforge.latents import latents_for_seeds
    from ganforge.serve.runtime.model_files import model_for_backend

    metadata = read_metadata(model_for_backend(model, "onnxruntime", "fp32", quiet=True))
    shape, z_dim = json.loads(metadata["output_shape"]), int(metadata["z_dim"])
    images = np.random.default_rng(0).uniform(-1, 1, (batch_size, *shape)).astype(np.float32)
    raw = to_uint8_nhwc(images).tobytes()
    pieces = {"latents": lambda: latents_for_seeds(range(batch_size), z_dim), "uint8": lambda: to_uint8_nhwc(images),
              "sha256": lambda: hashlib.sha256(raw).digest(), "crc32": lambda: zlib.crc32(raw)}
    costs = {name: 1e3 * statistics.median(measure(piece, 1, min_duration=seconds).latencies_s)
             for name, piece in pieces.items()}
    return costs | {"total": sum(costs.values())}


def timed_sample(config: SampleConfig) -> tuple[float, float, float]:
    """`sample(config)`: its wall seconds, and those from the first batch to the last shard on disk with this
    process's CPU seconds in them (the model load left out)."""
    start, sampler._run_shards = time.perf_counter(), _timed_shards
    try:
        sample(config)
    finally:
        sampler._run_shards = _run_shards
    streaming, cpu = timings.pop()
    return time.perf_counter() - start, streaming, cpu


def _repeat(model: str, backend: str, precision: str, images: int, batch_size: int, device: str,
            setting: tuple[int | None, str] = (None, "idle")) -> dict:
    """`sample()` between two offline measurements, against their mean (this machine's speed drifts by 10% within
    minutes: bracketing cancels a steady drift); the median repeat is the row (of an even count: the lower middle).
    On a GPU the offline rate is the host-uint8 one: images converted on the device, as the sampler does there."""
    in_flight, default = setting[0], sampler.HELPER_IDLE_PRIORITY
    io = "host-uint8" if device.startswith("cuda") else "host"
    before = scenarios.offline_for_model(model, backend, precision, batch_size, 3.0, device, io, in_flight)
    with tempfile.TemporaryDirectory() as out:
        config = SampleConfig(model=before["model_path"], out=out, seeds=tuple(range(images)), backend=backend,
                              precision=precision, batch_size=batch_size, quiet=True, device=device,
                              in_flight=in_flight)
        sampler.HELPER_IDLE_PRIORITY = setting[1] == "idle"
        try:
            seconds, streaming, cpu = timed_sample(config)
        finally:
            sampler.HELPER_IDLE_PRIORITY = default
    after = scenarios.offline_for_model(model, backend, precision, batch_size, 3.0, device, io, in_flight)
    offline = [before["images_per_second"], after["images_per_second"]]
    row = {"offline_images_per_second": sum(offline) / 2, "offline_before_after": offline,
           "offline_window_rates": before["window_rates"] + after["window_rates"], "sample_seconds": seconds,
           "load_seconds": seconds - streaming, "streaming_seconds": streaming, "cores_busy": cpu / streaming,
           "sample_images_per_second": images / streaming, "sample_images_per_second_with_load": images / seconds}
    return row | {"fraction_of_offline": row["sample_images_per_second"] / row["offline_images_per_second"]}


if __name__ == "__main__":
    sys.exit(main())
