"""The dataset formats of `ganforge sample`: shards that training pipelines read directly.

- ``webdataset``: ``shard-NNNNN.tar``, per sample ``KEY.png`` (or ``.jpg``/``.webp``) and ``KEY.json``, KEY the seed
  as ten or more digits, members in seed order. Headers are fixed (mtime 0, root, mode 644), so a shard's bytes
  depend on the model, backend, seeds and controls only. Streamed: each batch is encoded and appended as it comes.
- ``parquet``: ``shard-NNNNN.parquet``, one row per sample: ``image`` (struct of ``bytes`` and ``path``, which
  Hugging Face ``datasets`` reads as an Image feature, named in the schema's ``huggingface`` metadata), ``seed``,
  ``class`` (conditional models: one per class group) and ``json``, the same record as the WebDataset's.

The record of a sample: seed, class (what the generator reads from its latent: chosen, or the seed's own),
truncation psi, the model's sha256, backend and precision.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganforge.errors import UserError
from ganforge.files import AtomicFile, atomic_write_bytes
from ganforge.images import encode_image

from .shards import HashingStream, shard_entry, shard_name, shard_rows

# PNG at zlib level 1: about as small as the default level 6 on generated images, and faster to write
IMAGE_FORMATS = {"png": ("PNG", {"compress_level": 1}), "jpeg": ("JPEG", {"quality": 95}),
                 "webp": ("WEBP", {"quality": 95})}
ENCODERS = min(4, os.cpu_count() or 1)  # threads that encode a batch's images at once (Pillow releases the GIL)
SUFFIX = {"png": "png", "jpeg": "jpg", "webp": "webp"}


@dataclass(frozen=True)
class SampleRecord:
    """What each sample of a dataset shard carries beside its image."""

    fields: dict  # the same for every sample: truncation, model_sha256, backend, precision
    classes_of: Callable[[np.ndarray], np.ndarray] | None = None  # latents -> [n, groups] classes (conditional G)
    image_format: str = "png"

    def records(self, seeds: np.ndarray, z: np.ndarray) -> list[dict]:
        classes = self.classes_of(z).tolist() if self.classes_of is not None else None
        return [{"seed": int(seed), **({"class": classes[i]} if classes else {}), **self.fields}
                for i, seed in enumerate(seeds)]


def encode_sample(image: np.ndarray, image_format: str) -> bytes:
    """uint8 [H, W, C] -> PNG (lossless), JPEG (quality 95) or WebP (quality 95) bytes."""
    name, options = IMAGE_FORMATS[image_format]
    return encode_image(image, name, **options)


def sample_key(seed: int) -> str:
    return f"{int(seed):010d}"


class _RowsShard:
    """The rows a dataset shard has been given so far: images and latents, consumed batch by batch."""

    def __init__(self, folder: Path, index: int, seeds: np.ndarray, record: SampleRecord):
        self.folder, self.index, self.seeds, self.record, self.rows = folder, index, seeds, record, 0
        self.encoders = ThreadPoolExecutor(ENCODERS, thread_name_prefix="ganforge-encode")

    def _take(self, out: np.ndarray, z: np.ndarray) -> tuple[list[bytes], np.ndarray, list[dict]]:
        """A batch's encoded images (in order, encoded on several threads), seeds and records."""
        images = shard_rows(out)
        if images.ndim != 4:
            raise UserError("dataset formats hold images; a 2D (points) model samples to npz")
        seeds = self.seeds[self.rows : self.rows + len(images)]
        self.rows += len(images)
        encoded = list(self.encoders.map(lambda image: encode_sample(image, self.record.image_format), images))
        return encoded, seeds, self.record.records(seeds, z)

    def _close(self) -> None:
        self.encoders.shutdown(wait=True)

    def _check_complete(self) -> None:
        if self.rows != len(self.seeds):
            raise RuntimeError(f"shard {self.index}: {self.rows} rows written for {len(self.seeds)} seeds")


class WebDatasetShard(_RowsShard):
    def __init__(self, folder: Path, index: int, seeds: np.ndarray, record: SampleRecord):
        super().__init__(folder, index, seeds, record)
        self.file = AtomicFile(folder / shard_name(index, "webdataset"))
        self.stream = HashingStream(self.file.handle)
        self.tar = tarfile.open(fileobj=self.stream, mode="w|", format=tarfile.PAX_FORMAT)

    def _member(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o644, "", ""
        self.tar.addfile(info, io.BytesIO(data))

    def add(self, out: np.ndarray, z: np.ndarray) -> None:
        images, seeds, records = self._take(out, z)
        suffix = SUFFIX[self.record.image_format]
        for seed, image, record in zip(seeds, images, records):
            key = sample_key(seed)
            self._member(f"{key}.{suffix}", image)
            self._member(f"{key}.json", json.dumps(record, sort_keys=True).encode())

    def finish(self) -> dict:
        self._check_complete()
        self._close()
        self.tar.close()
        self.file.commit()
        return shard_entry(self.index, "webdataset", self.seeds, self.stream.digest.hexdigest())

    def abort(self) -> None:
        self._close()
        with contextlib.suppress(OSError, ValueError, tarfile.TarError):
            self.tar.close()
        self.file.discard()


class ParquetShard(_RowsShard):
    def __init__(self, folder: Path, index: int, seeds: np.ndarray, record: SampleRecord):
        super().__init__(folder, index, seeds, record)
        self.columns: dict[str, list] = {"image": [], "seed": [], "class": [], "json": []}

    def add(self, out: np.ndarray, z: np.ndarray) -> None:
        images, seeds, records = self._take(out, z)
        suffix = SUFFIX[self.record.image_format]
        for seed, image, record in zip(seeds, images, records):
            self.columns["image"].append({"bytes": image, "path": f"{sample_key(seed)}.{suffix}"})
            self.columns["seed"].append(int(seed))
            self.columns["class"].append(record.get("class"))
            self.columns["json"].append(json.dumps(record, sort_keys=True))

    def finish(self) -> dict:
        import hashlib

        self._check_complete()
        self._close()
        data = parquet_bytes(self.columns, conditional=self.record.classes_of is not None)
        self.columns = {}
        atomic_write_bytes(self.folder / shard_name(self.index, "parquet"), data)
        return shard_entry(self.index, "parquet", self.seeds, hashlib.sha256(data).hexdigest())

    def abort(self) -> None:
        self._close()
        self.columns = {}


def parquet_bytes(columns: dict[str, list], conditional: bool) -> bytes:
    """One Parquet table (one row group, no timestamps) with Hugging Face ``datasets`` features in its schema."""
    pa, pq = import_pyarrow()
    fields = [("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])), ("seed", pa.int64())]
    features = {"image": {"_type": "Image"}, "seed": {"dtype": "int64", "_type": "Value"}}
    if conditional:
        fields.append(("class", pa.list_(pa.int64())))
        features["class"] = {"feature": {"dtype": "int64", "_type": "Value"}, "_type": "List"}
    fields.append(("json", pa.string()))
    features["json"] = {"dtype": "string", "_type": "Value"}
    schema = pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": features}})})
    table = pa.table({name: columns[name] for name, _ in fields}, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=max(1, len(columns["seed"])))
    return sink.getvalue().to_pybytes()


def import_pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as error:
        raise UserError("--format parquet needs pyarrow: pip install 'ganforge[datasets]'") from error
    return pa, pq
