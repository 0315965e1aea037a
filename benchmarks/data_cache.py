"""A folder larger than memory: the dataset cache's build time, training's peak resident memory, and steps per second
read through the cache against the same images held in memory.

    python benchmarks/data_cache.py [--images 100000] [--resolution 128] [--folder /tmp/ganforge-photos]
                                    [--speed-images 10000] [--speed-steps 50] [--repeats 3]

1. Writes ``--images`` PNGs of random coloured shapes at ``--resolution`` px into ``--folder`` (once; reused).
2. ``ganforge train`` on ``folder:`` at that size (residual model, width 8, 20 steps, an evaluation at step 10), in
   a child process with a fresh cache: the first run builds the cache, a second run reuses it; each run's peak
   resident memory (ru_maxrss) and time.
3. Steps per second of a small DCGAN at 64 px (width 16: the data is a larger share of a step) on the first
   ``--speed-images`` images: the stream reading the cache
   file against the same images as a tensor in memory, alternated ``--repeats`` times.
Writes benchmarks/results/data_cache.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results" / "data_cache.json"


def write_photos(folder: Path, count: int, resolution: int) -> None:
    """Random coloured shapes as PNGs (render on threads: Pillow releases the GIL while encoding)."""
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from PIL import Image
    from tqdm import tqdm

    from ganforge.train.data.shapes import render_shapes

    folder.mkdir(parents=True, exist_ok=True)
    done = len(list(folder.glob("*.png")))
    if done >= count:
        return
    rng = torch.Generator().manual_seed(0)

    def save(item: tuple[int, np.ndarray]) -> None:
        Image.fromarray(item[1]).save(folder / f"{item[0]:06d}.png", compress_level=1)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool, tqdm(total=count, initial=done, desc="photos") as bar:
        for start in range(done, count, 500):
            n = min(500, count - start)
            radius = 0.1 + 0.2 * torch.rand(n, generator=rng)
            centre = radius[:, None] + (1 - 2 * radius[:, None]) * torch.rand(n, 2, generator=rng)
            images = render_shapes(torch.randint(3, (n,), generator=rng), torch.randint(6, (n,), generator=rng),
                                   centre, radius, resolution)
            list(pool.map(save, zip(range(start, start + n), images.permute(0, 2, 3, 1).numpy())))
            bar.update(n)


PEAK_RSS = "peak_rss_kib"


def measured_child(code: str, args: list[str], env: dict | None = None) -> tuple[subprocess.CompletedProcess, float,
                                                                                 int | None]:
    """Python ``code`` (with ``args`` as sys.argv[1:]) in a child process: the finished process, its wall seconds
    and its peak resident memory in MiB (its own ru_maxrss; None if it failed before reporting it)."""
    report = (f"import atexit, resource, sys; atexit.register(lambda: print('{PEAK_RSS}', "
              "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)); ")
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", report + code, *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    peak = next((int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith(PEAK_RSS)), None)
    return done, seconds, None if peak is None else round(peak / 1024)


def train_child(folder: Path, resolution: int, cache: Path, out: Path) -> dict:
    """One `ganforge train` in a child process: its wall time and peak resident memory (its own ru_maxrss)."""
    env = {**os.environ, "GANFORGE_CACHE": str(cache)}
    args = ["train", "--data", f"folder:{folder}", "--model", "residual", "--width", "8", "--resolution",
            str(resolution), "--steps", "20", "--eval-every", "10", "--sample-every", "20", "--checkpoint-every",
            "20", "--out", str(out), "--quiet"]
    done, seconds, peak = measured_child("from ganforge.cli import main; sys.exit(main(sys.argv[1:]))", args, env)
    if done.returncode or peak is None:
        raise SystemExit(f"train failed:\n{done.stderr[-3000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_mib": peak, "stdout": done.stdout.strip().splitlines()[-3:]}


def steps_per_second(folder: Path, images: int, steps: int, repeats: int) -> dict:
    import torch

    from ganforge.train.data import load_data
    from ganforge.train.data.base import TensorStream
    from ganforge.train.precision import resolve_precision
    from ganforge.train.recipes import recipe_config
    from ganforge.train.trainer import Trainer

    torch.set_num_threads(os.cpu_count() or 1)
    subset = folder.parent / f"{folder.name}-first{images}"
    if not subset.is_dir():  # the speed test's folder: links to the first images
        subset.mkdir()
        for file in sorted(folder.glob("*.png"))[:images]:
            (subset / file.name).symlink_to(file)
    config = recipe_config(f"folder:{subset}", model="dcgan", resolution=64, width=16, self_conditional=0,
                           augment="", device="cpu", precision="fp32", quiet=True).resolved()
    cached = load_data(config.data, 64, 0, quiet=False)
    in_memory = {**vars(cached)}
    in_memory["stream"] = TensorStream(cached.stream.images[torch.arange(len(cached.stream.images))], 0)
    sources = {"cache": cached, "memory": type(cached)(**in_memory)}
    trainers = {name: Trainer(config, source, resolve_precision("fp32", "cpu")) for name, source in sources.items()}
    rates = {name: [] for name in trainers}
    for trainer in trainers.values():
        for _ in range(5):
            trainer.train_step()
    for _ in range(repeats):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            for _ in range(steps):
                trainer.train_step()
            rates[name].append(steps / (time.perf_counter() - start))
    return {name: {"median": round(statistics.median(r), 2), "min": round(min(r), 2), "max": round(max(r), 2)}
            for name, r in rates.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--folder", default="/tmp/ganforge-photos")
    parser.add_argument("--speed-images", type=int, default=10_000)
    parser.add_argument("--speed-steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    from ganforge.benchmarks.bench.environment import environment
    from ganforge.files import atomic_write_bytes

    folder = Path(args.folder)
    write_photos(folder, args.images, args.resolution)
    with tempfile.TemporaryDirectory(prefix="ganforge-cache-") as scratch:
        cache = Path(scratch) / "cache"
        first = train_child(folder, args.resolution, cache, Path(scratch) / "run1")
        second = train_child(folder, args.resolution, cache, Path(scratch) / "run2")
        (manifest_file,) = cache.glob("*/manifest.json")
        manifest = json.loads(manifest_file.read_text())
        os.environ["GANFORGE_CACHE"] = str(cache)
        speed = steps_per_second(folder, args.speed_images, args.speed_steps, args.repeats)
    ratio = speed["cache"]["median"] / speed["memory"]["median"]
    data_bytes = args.images * 3 * args.resolution**2
    print(f"{args.images:,} images at {args.resolution} px ({data_bytes / 2**30:.1f} GiB decoded)")
    print(f"cache built in {manifest['built_seconds']:.0f}s; training run 1 (builds the cache) "
          f"{first['seconds']:.0f}s, peak RSS {first['peak_rss_mib']} MiB; run 2 (reuses it) {second['seconds']:.0f}s, "
          f"peak RSS {second['peak_rss_mib']} MiB")
    print(f"DCGAN-64 (width 16) steps/s on {args.speed_images:,} images: cache {speed['cache']['median']:.2f} "
          f"({speed['cache']['min']:.2f}-{speed['cache']['max']:.2f}), memory {speed['memory']['median']:.2f} "
          f"({speed['memory']['min']:.2f}-{speed['memory']['max']:.2f}): {100 * ratio:.0f}%")
    result = {"benchmark": "data_cache", "environment": environment(None), "images": args.images,
              "resolution": args.resolution, "decoded_bytes": data_bytes,
              "cache_build_seconds": manifest["built_seconds"],
              "first_run": first, "second_run": second, "speed_images": args.speed_images,
              "steps_per_second": speed, "cache_over_memory": round(ratio, 3)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(Path(args.out), json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
