"""User data: a folder of PNG/JPEG files, an .npz array file, or MNIST-format IDX files."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import torch

from ganforge.errors import UserError

from .base import DataSource, TensorStream, resize_images
from .cache import folder_images

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def image_files(path: Path) -> list[Path]:
    """The folder's PNG/JPEG files, recursively, in a fixed order."""
    if not path.is_dir():
        raise UserError(f"folder:{path}: not a directory")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise UserError(f"folder:{path}: no PNG or JPEG images found (searched recursively)")
    return files


def file_source_has_labels(prefix: str, path: Path) -> bool:
    """Whether a file source carries labels, found without decoding its images (recipes depend on it)."""
    if prefix == "folder":
        return _labels_from_subfolders(path, image_files(path)) is not None
    if prefix == "npz":
        try:
            with np.load(path) as archive:
                return any(key in archive.files for key in ("labels", "y"))
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise UserError(f"npz:{path}: cannot read: {error}") from error
    return _idx_label_path(path) is not None


def load_folder(path: Path, resolution: int, seed: int, fit: str = "crop", quiet: bool = False) -> DataSource:
    """Read through the folder's dataset cache (``cache.py``): decoded once per resolution, never all in memory."""
    files = image_files(path)
    images = folder_images(path, files, resolution, fit, quiet)
    labels = _labels_from_subfolders(path, files)
    return DataSource(name="folder", kind="images", sample_shape=tuple(images.shape[1:]),
                      stream=TensorStream(images, seed, labels), num_samples=len(images), labels=labels)


def _labels_from_subfolders(root: Path, files: list[Path]) -> torch.Tensor | None:
    """Images in class subfolders (root/<class>/x.png) get the class index as label, as ImageFolder does."""
    parts = [file.relative_to(root).parts for file in files]
    if any(len(p) < 2 for p in parts):
        return None
    classes = sorted({p[0] for p in parts})
    return torch.tensor([classes.index(p[0]) for p in parts])


def _npz_to_uint8_nchw(array: np.ndarray, source: str) -> torch.Tensor:
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or len(array) == 0:
        raise UserError(f"{source}: images must be [N, H, W], [N, H, W, C] or [N, C, H, W], got {array.shape}")
    if array.shape[1] not in (1, 3) and array.shape[3] in (1, 3):
        array = array.transpose(0, 3, 1, 2)  # NHWC -> NCHW
    if array.shape[1] not in (1, 3) or array.shape[2] != array.shape[3]:
        raise UserError(f"{source}: need square images with 1 or 3 channels, got shape {array.shape}")
    if array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array))
    if not np.issubdtype(array.dtype, np.floating):
        raise UserError(f"{source}: images must be uint8 or float, got {array.dtype}")
    low, high = float(array.min()), float(array.max())
    if not np.isfinite([low, high]).all() or low < -1 or high > 1:
        raise UserError(f"{source}: float images must lie in [0, 1] or [-1, 1], found [{low:.3g}, {high:.3g}]")
    unit = (array + 1) / 2 if low < 0 else array
    return torch.from_numpy(np.round(unit * 255).astype(np.uint8))


def load_npz(path: Path, resolution: int, seed: int) -> DataSource:
    source = f"npz:{path}"
    try:
        with np.load(path) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise UserError(f"{source}: cannot read: {error}") from error
    key = next((k for k in ("images", "x", "arr_0") if k in arrays), None)
    if key is None:
        key = next(iter(arrays)) if len(arrays) == 1 else None
    if key is None:
        raise UserError(f"{source}: no 'images' array (found {', '.join(arrays) or 'nothing'})")
    images = resize_images(_npz_to_uint8_nchw(arrays[key], source), resolution)
    label_key = next((k for k in ("labels", "y") if k in arrays), None)
    labels = torch.from_numpy(arrays[label_key]).long() if label_key else None
    if labels is not None and len(labels) != len(images):
        raise UserError(f"{source}: {len(labels)} labels for {len(images)} images")
    return DataSource(name="npz", kind="images", sample_shape=tuple(images.shape[1:]),
                      stream=TensorStream(images, seed, labels), num_samples=len(images), labels=labels)


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not: magic 0x00 0x00 <type> <ndim>, then sizes."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise UserError(f"idx:{path}: cannot read: {error}") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"idx:{path}: not an unsigned-byte IDX file (wrong magic number {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(shape)):
        raise UserError(f"idx:{path}: size does not match its header shape {shape} (truncated?)")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _idx_label_path(path: Path) -> Path | None:
    """MNIST's naming: the labels of ``x-images-idx3-ubyte`` are ``x-labels-idx1-ubyte`` beside it (None if there
    is no such file)."""
    label_path = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
    return label_path if label_path != path and label_path.is_file() else None


def load_idx(path: Path, resolution: int, seed: int) -> DataSource:
    if not path.is_file():
        raise UserError(f"idx:{path}: no such file")
    array = read_idx(path)
    if array.ndim != 3:
        raise UserError(f"idx:{path}: expected images [N, H, W], got an array of shape {array.shape}")
    images = resize_images(torch.from_numpy(array.copy())[:, None], resolution)
    labels = None
    label_path = _idx_label_path(path)
    if label_path is not None:
        labels = torch.from_numpy(read_idx(label_path).astype(np.int64))
    return DataSource(name="idx", kind="images", sample_shape=tuple(images.shape[1:]),
                      stream=TensorStream(images, seed, labels), num_samples=len(images), labels=labels)
