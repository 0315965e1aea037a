"""Shard files of `ganforge sample`: written as their batches arrive, atomically, with the sha256 of what was written.

An npz shard is streamed: its temp file is opened when the shard's first batch is out of the runtime, every
batch's rows are appended (and hashed) as soon as they are converted, and ``finish`` only writes the zip's
directory, fsyncs and renames. So the disk work of a shard overlaps the inference of the shard itself, and the
last shard of a run does not add a whole shard's encoding, hashing and writing after inference has ended. The zip
is written with data descriptors (the sizes and CRC after each member, as zip writers that cannot seek do), so the
file is hashed in one sequential pass; ``numpy.load`` reads it as it reads ``numpy.savez``'s files.

A PNG shard is a folder of one PNG per seed, encoded and written when its last batch is in.

The dataset formats (``datasets.py``) stream the same way: a WebDataset tar (``KEY.png`` and ``KEY.json`` per
sample, members in seed order with fixed headers) and a Parquet table (an ``image`` column that Hugging Face
``datasets`` reads as its Image feature, beside ``seed``, ``class`` and a JSON record per image).

    shard = open_shard(folder, index, seeds, "npz")
    for out, z in batches:        # in order; NCHW floats from the runtime (or [n, 2] points), and their latents
        shard.add(out, z)
    entry = shard.finish()        # the manifest entry: file, seeds, count, sha256
"""

from __future__ import annotations

import contextlib
import hashlib
import zipfile
from pathlib import Path

import numpy as np

from ganforge.files import AtomicFile, atomic_write_bytes
from ganforge.images import encode_image, to_uint8_nhwc

SUFFIXES = {"npz": ".npz", "png": "", "webdataset": ".tar", "parquet": ".parquet"}  # png: a folder


def shard_name(index: int, fmt: str) -> str:
    return f"shard-{index:05d}{SUFFIXES[fmt]}"


def shard_rows(out: np.ndarray) -> np.ndarray:
    """A runtime's batch -> the rows a shard stores: uint8 NHWC images (as they come from a runner's
    ``infer_uint8``, or converted here), or float32 [n, 2] points."""
    if out.dtype == np.uint8:
        return out
    return out.astype(np.float32) if out.ndim == 2 else to_uint8_nhwc(out)


def shard_sha256(folder: Path, entry: dict, fmt: str) -> str | None:
    """The sha256 of a shard on disk, as its manifest entry records it; None when it is missing or incomplete."""
    path = folder / entry["file"]
    digest = hashlib.sha256()
    try:
        if fmt != "png":
            digest.update(path.read_bytes())
        else:
            files = sorted(path.glob("seed*.png"))
            if len(files) != entry["count"]:
                return None
            for file in files:
                digest.update(file.read_bytes())
    except OSError:
        return None
    return digest.hexdigest()


class HashingStream:
    """Write-only and not seekable (so zipfile writes data descriptors): passes bytes on and hashes them."""

    def __init__(self, handle):
        self.handle, self.digest = handle, hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


class NpzShard:
    """``seeds`` int64 [n] and ``images`` uint8 [n, H, W, C] (or ``points`` float32 [n, 2]), streamed."""

    def __init__(self, folder: Path, index: int, seeds: np.ndarray):
        self.index, self.seeds = index, seeds
        self.file = AtomicFile(folder / shard_name(index, "npz"))
        self.stream = HashingStream(self.file.handle)
        self.zip = zipfile.ZipFile(self.stream, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True)
        self._write_member("seeds.npy", np.ascontiguousarray(seeds, dtype=np.int64))
        self.member, self.rows = None, 0

    def _write_member(self, name: str, array: np.ndarray) -> None:
        with self.zip.open(name, "w", force_zip64=True) as member:
            np.lib.format.write_array(member, array, allow_pickle=False)

    def add(self, out: np.ndarray, z: np.ndarray | None = None) -> None:
        rows = shard_rows(out)
        if self.member is None:  # the header needs the shape, known from the first batch
            name = "points.npy" if rows.ndim == 2 else "images.npy"
            self.member = self.zip.open(name, "w", force_zip64=True)
            header = {"descr": np.lib.format.dtype_to_descr(rows.dtype), "fortran_order": False,
                      "shape": (len(self.seeds), *rows.shape[1:])}
            np.lib.format.write_array_header_1_0(self.member, header)
        self.member.write(memoryview(np.ascontiguousarray(rows)).cast("B"))
        self.rows += len(rows)

    def finish(self) -> dict:
        if self.rows != len(self.seeds):
            raise RuntimeError(f"shard {self.index}: {self.rows} rows written for {len(self.seeds)} seeds")
        self.member.close()
        self.zip.close()
        self.file.commit()
        return shard_entry(self.index, "npz", self.seeds, self.stream.digest.hexdigest())

    def abort(self) -> None:
        """Drop the temp file (a crash or Ctrl-C mid-shard): nothing half-written stays under the shard's name.
        The zip is closed first (into the file about to go), so nothing writes to it later; a no-op once finished."""
        with contextlib.suppress(OSError, ValueError):  # e.g. the disk that failed the shard fails this too
            if self.member is not None:
                self.member.close()
            self.zip.close()
        self.file.discard()


class PngShard:
    """A folder ``shard-NNNNN`` of ``seedNNNNNNNNNN.png`` files, each written atomically when the shard is full."""

    def __init__(self, folder: Path, index: int, seeds: np.ndarray):
        self.folder, self.index, self.seeds, self.images = folder, index, seeds, []

    def add(self, out: np.ndarray, z: np.ndarray | None = None) -> None:
        self.images.append(shard_rows(out))

    def finish(self) -> dict:

        shard_dir = self.folder / shard_name(self.index, "png")
        shard_dir.mkdir(exist_ok=True)
        digest = hashlib.sha256()
        images, self.images = np.concatenate(self.images), []  # the sampler keeps its shards until the run ends
        for seed, image in zip(self.seeds, images):
            data = encode_image(image)
            atomic_write_bytes(shard_dir / f"seed{seed:010d}.png", data)
            digest.update(data)
        return shard_entry(self.index, "png", self.seeds, digest.hexdigest())

    def abort(self) -> None:
        self.images = []


def open_shard(folder: Path, index: int, seeds: np.ndarray, fmt: str, record=None):
    """The writer of shard ``index``; ``record`` (a datasets.SampleRecord) is what the dataset formats store beside
    each image."""
    if fmt == "npz":
        return NpzShard(folder, index, seeds)
    if fmt == "png":
        return PngShard(folder, index, seeds)
    from .datasets import ParquetShard, WebDatasetShard

    return (WebDatasetShard if fmt == "webdataset" else ParquetShard)(folder, index, seeds, record)


def shard_entry(index: int, fmt: str, seeds: np.ndarray, sha256: str) -> dict:
    return {"index": index, "file": shard_name(index, fmt), "first_seed": int(seeds[0]),
            "last_seed": int(seeds[-1]), "count": len(seeds), "sha256": sha256}
