"""`ganforge sample` into each output format with one backend, alternated in one run: the dataset formats'
(WebDataset, Parquet) rate as a fraction of npz's.

    python benchmarks/sample_formats.py [--model runs/bench-dcgan64] [--images 20000] [--backends auto,onnxruntime]
                                        [--formats npz,webdataset,parquet] [--repeats 3]

Each repeat samples --images seeds into every format in turn (a fresh folder each time; timed from the first batch
to the last shard on disk, as benchmarks/sample_e2e.py times it: the model load is the same for every format), and
takes each format's rate over npz's within that repeat; rows report the median repeat and the range. PNG images in
both dataset formats (lossless, the pixels the npz holds). Writes benchmarks/results/sample_formats.json and prints
the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from ganforge.benchmarks.backends_table import bench_run
from ganforge.benchmarks.bench.environment import environment
from ganforge.benchmarks.sample_e2e import timed_sample
from ganforge.files import atomic_write_bytes
from ganforge.serve.runtime.auto import AUTO, AutoConfig, choose
from ganforge.serve.sampling.sampler import SampleConfig

RESULTS = Path(__file__).parent / "results" / "sample_formats.json"
TARGET = 0.85  # the dataset formats at >= 85% of npz's rate


def format_rate(model: str, backend: str, precision: str, fmt: str, images: int, batch_size: int) -> float:
    """Images per second of one `sample()` into a fresh folder (deleted after), from its first batch to its last
    shard on disk."""
    with tempfile.TemporaryDirectory(prefix="ganforge-formats-") as tmp:
        _, streaming, _ = timed_sample(SampleConfig(model=model, out=tmp, seeds=tuple(range(images)),
                                                    backend=backend, precision=precision, format=fmt,
                                                    batch_size=batch_size, quiet=True))
    return images / streaming


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/bench-dcgan64", help="run folder or model (made if missing)")
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--backends", default="auto,onnxruntime", help="names or name:precision (plain: fp32)")
    parser.add_argument("--formats", default="npz,webdataset,parquet", help="npz first: the reference")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    formats = args.formats.split(",")
    if formats[0] != "npz" or args.repeats < 1:
        parser.error("--formats must start with npz (the reference) and --repeats be at least 1")
    model = str(bench_run(Path(args.model))) if args.model == parser.get_default("model") else args.model
    results = {"environment": environment(None), "model": model, "images": args.images,
               "batch_size": args.batch_size, "target": TARGET, "rows": []}
    for asked in args.backends.split(","):
        backend, _, precision = asked.partition(":")
        precision = precision or "fp32"
        if backend == AUTO:
            choice = choose(AutoConfig(model=model, batch_size=args.batch_size))
            backend, precision = choice.backend, choice.precision
        format_rate(model, backend, precision, "npz", min(args.images, 2000), args.batch_size)  # warm caches
        rates = {fmt: [] for fmt in formats}
        for _ in range(args.repeats):
            for fmt in formats:
                rates[fmt].append(format_rate(model, backend, precision, fmt, args.images, args.batch_size))
        for fmt in formats:
            fractions = [rate / npz for rate, npz in zip(rates[fmt], rates["npz"])]
            row = {"asked": asked, "backend": backend, "precision": precision, "format": fmt,
                   "images_per_second": statistics.median(rates[fmt]), "images_per_second_all": rates[fmt],
                   "fraction_of_npz": statistics.median(fractions), "fraction_of_npz_range": [min(fractions),
                                                                                                max(fractions)]}
            results["rows"].append(row)
            print(f"{asked:<12} {backend} {precision} {fmt:<11} {row['images_per_second']:7.0f} img/s "
                  f"= {100 * row['fraction_of_npz']:.0f}% of npz ({100 * min(fractions):.0f}-"
                  f"{100 * max(fractions):.0f}%, {args.repeats} alternated repeats; target {100 * TARGET:.0f}%)",
                  flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(Path(args.out), json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
