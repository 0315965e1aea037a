"""`sample()`: seeds in, images out, at high throughput, surviving crashes.

Seeds are cut into fixed-size shards. Inference runs in the main thread while a thread pool encodes and
writes finished shards (each file written atomically), so the backend never waits for the disk. After each
shard the manifest is rewritten atomically; ``resume=True`` skips the shards it lists whose sha256 still
matches. The output depends only on the model, backend and seeds: not on batch size, workers or crashes.
Under torchrun, shard i belongs to rank i % world_size and rank 0 merges the manifests at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ganforge.errors import UserError
from ganforge.export.model_source import ModelSource, resolve_model
from ganforge.files import atomic_write_bytes, remove_stale_temps
from ganforge.latents import LatentControls
from ganforge.serve.runtime.auto import AUTO, AutoConfig, choose
from ganforge.serve.runtime.latent_space import LatentSpace
from ganforge.serve.runtime.model_files import model_for_backend
from ganforge.serve.runtime.runners import copies, open_runner
from ganforge.serve.runtime.runners.base import offline_in_flight

from .datasets import IMAGE_FORMATS, SampleRecord, import_pyarrow
from .shards import SUFFIXES as FORMATS
from .shards import open_shard, shard_name, shard_sha256

MANIFEST = "manifest.json"
HELPER_IDLE_PRIORITY = True  # the helper thread runs on what inference leaves of the cores (benchmarks/sample_e2e.py)


@dataclass(frozen=True)
class SampleConfig:
    """Example: ``sample(SampleConfig(model="g.onnx", out="samples", seeds=tuple(range(1000))))``."""

    model: str  # run folder, checkpoint, .onnx, .pt2 or .engine (as the backend needs)
    out: str
    seeds: tuple[int, ...]
    backend: str = "auto"  # auto: the fastest accurate backend here (serve/auto.py), chosen once per run
    format: str = "npz"
    batch_size: int = 64
    workers: int = 2
    shard_size: int = 10_000
    precision: str | None = None  # None: fp32, or with backend auto any precision that passes min_psnr
    device: str = "cpu"
    resume: bool = False
    quiet: bool = False
    min_psnr: float = 40.0  # backend auto's accuracy bound
    checkpoint: str | None = None  # run folders: "best", "latest", "step-001000" (default latest)
    truncation: float = 1.0  # psi in (0, 1]: latents scaled towards the mean (ganforge/latents.py); 1: as drawn
    classes: tuple[int, ...] | None = None  # a conditional model's class for every sample (one per class group)
    image_format: str = "png"  # webdataset and parquet: png, jpeg or webp
    in_flight: int | None = None  # batches computing at once (runner copies); None: the backend's (offline_in_flight)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise UserError(f"unknown --format {self.format!r} (choose from {', '.join(FORMATS)})")
        if self.image_format not in IMAGE_FORMATS:
            raise UserError(f"unknown --image-format {self.image_format!r} (choose from {', '.join(IMAGE_FORMATS)})")
        if self.image_format != "png" and self.format not in ("webdataset", "parquet"):
            raise UserError("--image-format applies to --format webdataset and parquet (npz holds raw pixels, "
                            "--format png PNG files)")
        if self.format == "parquet":
            import_pyarrow()  # one clear line before any work when it is missing
        for name in ("batch_size", "workers", "shard_size", "in_flight"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if not self.seeds:
            raise UserError("no seeds given")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError("seeds must not repeat")
        LatentControls(self.truncation)  # psi in (0, 1]; classes are checked against the model


class Manifest:
    def __init__(self, folder: Path, header: dict, rank: int, world_size: int):
        self.folder, self.header = folder, header
        self.name = MANIFEST if world_size == 1 else f"manifest-rank{rank}.json"
        self.entries: dict[int, dict] = {}
        self.lock = threading.Lock()  # writer threads report finished shards concurrently

    def load_completed(self, shards: list[np.ndarray]) -> None:
        """Entries from earlier (crashed) runs whose files are intact. The seeds are part of the identity: a
        folder sampled for other seeds is refused, never passed off as this run's output."""
        for file in [self.folder / MANIFEST, *sorted(self.folder.glob("manifest-rank*.json"))]:
            if not file.is_file():
                continue
            saved = _read_manifest(file)
            mismatched = [k for k in IDENTITY if saved.get(k) != self.header.get(k)]
            if mismatched:
                raise UserError(f"{file}: cannot resume: {', '.join(mismatched)} differ from this run's "
                                "(use another --out for other seeds, model or settings)")
            for entry in saved["shards"]:
                _check_entry(file, entry, shards, self.header["format"])
                if shard_sha256(self.folder, entry, self.header["format"]) == entry["sha256"]:
                    self.entries[entry["index"]] = entry

    def add(self, entry: dict) -> None:
        with self.lock:
            self.entries[entry["index"]] = entry
            self.save(self.name, complete=False)

    def save(self, name: str, complete: bool) -> None:
        body = {**self.header, "complete": complete, "shards": [self.entries[i] for i in sorted(self.entries)]}
        text = json.dumps(body, indent=1) + "\n"
        atomic_write_bytes(self.folder / name, text)


# what a manifest must share with this run for its shards to be reused
IDENTITY = ("model_sha256", "backend", "precision", "format", "shard_size", "num_seeds", "seeds_sha256",
            "truncation", "classes", "image_format")


def _read_manifest(file: Path) -> dict:
    try:
        saved = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{file}: unreadable manifest ({error}); move it away to sample this folder anew") from error
    if not isinstance(saved, dict) or not isinstance(saved.get("shards"), list):
        raise UserError(f"{file}: not a ganforge sample manifest")
    return saved


def _check_entry(file: Path, entry: object, shards: list[np.ndarray], fmt: str) -> None:
    """A manifest entry names shard i by its plain file name and this run's seeds, nothing else."""
    index = entry.get("index") if isinstance(entry, dict) else None
    if not isinstance(index, int) or not 0 <= index < len(shards):
        raise UserError(f"{file}: shard entry {entry!r} is not one of this run's {len(shards)} shards")
    seeds = shards[index]
    expected = {"file": shard_name(index, fmt), "first_seed": int(seeds[0]), "last_seed": int(seeds[-1]),
                "count": len(seeds)}
    wrong = [k for k, v in expected.items() if entry.get(k) != v]
    if wrong or not isinstance(entry.get("sha256"), str):
        raise UserError(f"{file}: shard {index} entry does not match this run ({', '.join(wrong) or 'sha256'})")


def seeds_sha256(seeds: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(seeds, dtype="<i8").tobytes()).hexdigest()


def sample(config: SampleConfig) -> Path:
    from ganforge.distributed import init_distributed, shutdown_distributed

    context = init_distributed()
    try:
        return _sample(config, context)
    finally:
        shutdown_distributed(context)


def _sample(config: SampleConfig, context) -> Path:
    folder = Path(config.out)
    if (folder / MANIFEST).exists() and not config.resume:
        raise UserError(f"{folder} already holds samples: add --resume to continue, or choose another --out")
    source = resolve_model(config.model, config.checkpoint, cache=folder)  # the only resolution of the model
    space = LatentSpace.from_generator_config(source.generator_config)
    controls = space.controls(config.truncation, config.classes)  # checked before a backend is chosen
    folder.mkdir(parents=True, exist_ok=True)
    config, model_path = _resolve_backend(config, source, context, folder)
    seeds = np.asarray(config.seeds, dtype=np.int64)
    shards = [seeds[i : i + config.shard_size] for i in range(0, len(seeds), config.shard_size)]
    with open_runner(config.backend, model_path, config.device, config.precision) as runner:
        points = len(runner.info.output_shape) == 1
        if points and config.format != "npz":
            raise UserError(f"{config.model} is a 2D (points) model: its samples are coordinates, not images; "
                            "use --format npz")
        header = {"format": config.format, "model": str(model_path), "model_sha256": runner.info.model_sha256,
                  "backend": runner.info.backend, "precision": runner.info.precision,
                  "shard_size": config.shard_size, "num_seeds": len(seeds), "seeds_sha256": seeds_sha256(seeds),
                  "first_seed": int(seeds[0]), "last_seed": int(seeds[-1]), "num_shards": len(shards),
                  "layout": "points [n, 2] float32" if points else "images NHWC uint8"}
        if not controls.is_default:  # absent by default: manifests of plain latents stay as they were
            header |= {"truncation": config.truncation} | ({"classes": list(config.classes)} if config.classes else {})
        if config.format in ("webdataset", "parquet"):
            header["image_format"] = config.image_format
        record = SampleRecord({"truncation": config.truncation, "model_sha256": runner.info.model_sha256,
                               "backend": runner.info.backend, "precision": runner.info.precision},
                              space.classes_of if space.class_prior else None, config.image_format)
        manifest = Manifest(folder, header, context.rank, context.world_size)
        if config.resume:
            if context.is_main:  # temp files a kill left; before any rank writes again (the barrier)
                remove_stale_temps(folder, recursive=True)
            if context.enabled:
                import torch.distributed as dist

                dist.barrier()
            manifest.load_completed(shards)
        mine = [i for i in range(len(shards)) if i % context.world_size == context.rank]
        todo = [i for i in mine if i not in manifest.entries]
        _run_shards(runner, space.latents, controls, record, shards, todo, folder, config, manifest,
                    context.is_main)
    if context.enabled:
        import torch.distributed as dist

        dist.barrier()
    if context.is_main:
        for part in sorted(folder.glob("manifest-rank*.json")):
            for entry in json.loads(part.read_text())["shards"]:
                manifest.entries[entry["index"]] = entry
        manifest.save(MANIFEST, complete=len(manifest.entries) == len(shards))
        for part in folder.glob("manifest-rank*.json"):
            part.unlink()
    return folder / MANIFEST


def _resolve_backend(config: SampleConfig, source: ModelSource, context, folder: Path) -> tuple[SampleConfig, str]:
    """A concrete backend and precision, and the file it loads. ``auto`` is decided once, by rank 0, and sent to
    every rank (all ranks must compute the same images); a resumed folder keeps the backend and precision it was
    started with."""
    if config.backend != AUTO:
        config = dataclasses.replace(config, precision=config.precision or "fp32")
        return config, _model_file(source, config)
    choice = [None]
    if context.is_main:
        saved = _read_manifest(folder / MANIFEST) if config.resume and (folder / MANIFEST).is_file() else None
        if saved and saved.get("backend") and saved.get("precision"):
            choice = [(saved["backend"], saved["precision"], None)]
            if not config.quiet:
                print(f"auto: {saved['backend']} {saved['precision']}, as the run being resumed", file=sys.stderr)
        else:
            picked = choose(AutoConfig(model=source, device=config.device, batch_size=config.batch_size,
                                       min_psnr=config.min_psnr, quiet=config.quiet, images=len(config.seeds),
                                       precisions=(config.precision,) if config.precision else None))
            choice = [(picked.backend, picked.precision, picked.model_path)]
    if context.enabled:
        import torch.distributed as dist

        dist.broadcast_object_list(choice, src=0)
    backend, precision, model_path = choice[0]
    config = dataclasses.replace(config, backend=backend, precision=precision)
    return config, model_path or _model_file(source, config)


def _model_file(source: ModelSource, config: SampleConfig) -> str:
    return model_for_backend(source, config.backend, config.precision, quiet=config.quiet, device=config.device)


def device_uint8(runner):
    """On a GPU, a runner's ``infer_uint8``: images become the shard's uint8 NHWC bytes on the device (the same
    bytes), so a quarter of them cross to the host and the helper thread has none to convert. None elsewhere: on a
    CPU the conversion runs best beside inference, in the helper thread."""
    on_gpu = runner.info.device.startswith("cuda") and len(runner.info.output_shape) == 3
    return getattr(runner, "infer_uint8", None) if on_gpu else None


def _below_inference() -> None:
    """The helper thread's initializer: on Linux it runs at idle priority (SCHED_IDLE), on cores that inference
    leaves idle (a runtime's threads wait at their barriers, between batches) instead of preempting one of the
    runtime's threads, which stalls the others at the next barrier. It never starves: when inference waits for its
    latents or rows, the cores are idle and the helper runs."""
    if HELPER_IDLE_PRIORITY and hasattr(os, "SCHED_IDLE"):
        with contextlib.suppress(OSError):  # e.g. a sandbox that forbids it: the default priority, as before
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))  # 0: this thread


def _run_shards(runner, latents, controls, record, shards, todo, folder: Path, config: SampleConfig,
                manifest: Manifest, show: bool) -> int:
    """``latents(seeds, controls)`` makes each batch's latents (LatentSpace.latents)."""
    total = sum(len(shards[i]) for i in todo)
    bar = tqdm(total=total, unit="img", desc=f"sample {runner.info.backend}", disable=config.quiet or not show,
               dynamic_ncols=True)
    started, pending = time.perf_counter(), []
    max_batch = min(config.batch_size, runner.info.max_batch)
    extra = copies(runner, (config.in_flight or offline_in_flight(runner)) - 1)
    infers = [device_uint8(each) or each.infer for each in (runner, *extra)]
    # One helper thread overlaps the work around inference with inference itself (runtimes release the GIL while
    # they compute): it makes the next batch's latents and turns finished batches into the shard's rows, appending
    # them to its file as they come (serve/shards.py); the pool finishes shards (npz: the zip directory, fsync and
    # rename; png: encoding) while inference goes on.
    open_shards: list = []
    try:
        with ThreadPoolExecutor(max_workers=config.workers) as pool, \
                ThreadPoolExecutor(max_workers=1, initializer=_below_inference) as helper:
            batches = [(index, start) for index in todo for start in range(0, len(shards[index]), max_batch)]

            def make_latents(k: int) -> Future | None:
                if k >= len(batches):
                    return None
                index, start = batches[k]
                return helper.submit(latents, shards[index][start : start + max_batch], controls)

            shard, added = None, []
            for (index, start), z, out in _computed(batches, make_latents, infers):
                seeds = shards[index]
                if shard is None:  # batches come shard by shard: one shard is filled at a time
                    shard = open_shard(folder, index, seeds, config.format, record)
                    open_shards.append(shard)
                added.append(helper.submit(shard.add, out, z))  # one helper thread: rows arrive in order
                bar.update(len(out))
                if start + max_batch >= len(seeds):  # the shard's last batch: finish it once every batch is in
                    for done in added:
                        done.result()
                    future: Future = pool.submit(shard.finish)
                    future.add_done_callback(lambda f: f.exception() is None and manifest.add(f.result()))
                    pending.append(future)
                    shard, added = None, []
                    while len(pending) > 2 * config.workers:  # bound the memory held by shards being finished
                        pending.pop(0).result()
            for future in pending:
                future.result()
    finally:  # a crash or Ctrl-C: no temp file of a shard left behind (finished shards are renamed already)
        for shard in open_shards:
            shard.abort()
        for each in extra:
            each.close()
    bar.close()
    seconds = time.perf_counter() - started
    if show and not config.quiet:
        print(f"sampled {total} images in {seconds:.1f}s ({total / max(seconds, 1e-9):.0f} img/s) with "
              f"{runner.info.backend} {runner.info.precision} -> {folder}")
    return total


def _computed(batches: list, make_latents, infers: list):
    """Each batch with its latents and images, in order, while ``len(infers)`` batches compute at once: batch k on
    ``infers[k % n]`` (a runner each, so none runs two batches at a time), the latents of batch k + 1 made meanwhile.
    ``make_latents(k)`` is a future of batch k's latents (None past the end)."""
    upcoming, window = make_latents(0), deque()
    with ThreadPoolExecutor(max_workers=len(infers)) if len(infers) > 1 else nullcontext() as computing:
        for k, batch in enumerate(batches):
            z, upcoming = upcoming.result(), make_latents(k + 1)
            if computing is None:
                yield batch, z, infers[0](z)
                continue
            window.append((batch, z, computing.submit(infers[k % len(infers)], z)))
            if len(window) == len(infers):  # the oldest is done before its runner gets batch k + 1
                batch, z, out = window.popleft()
                yield batch, z, out.result()
        while window:
            batch, z, out = window.popleft()
            yield batch, z, out.result()
