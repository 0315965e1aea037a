"""A folder of images decoded once per resolution into a uint8 file that training reads a batch at a time.

Data larger than memory: the first run on ``folder:PATH`` at a resolution decodes every image (on threads, with a
progress bar), fits it to a square (centre crop, or padding with black: ``fit``), resizes it and appends it to
``images.u8`` ([N, C, R, R] uint8, nothing else in the file); ``manifest.json``, written last, states what the
cache holds. Later runs find it by the folder's path, the resolution, the fit and a fingerprint of the files
(names, sizes, modification times), so an edited folder gets a new cache. Batches are read with ``pread``: nothing
is mapped, so a process holds the batches it asked for and the page cache does the rest.

The caches live under ``$GANFORGE_CACHE`` (default ``~/.cache/ganforge/datasets``); deleting one is always safe.

    images = folder_images(Path("~/photos").expanduser(), files, resolution=128, fit="crop")
    batch = images[torch.tensor([5, 0, 17])]  # uint8 [3, C, 128, 128]
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ganforge.errors import UserError
from ganforge.files import AtomicFile, atomic_write_bytes

CACHE_ENV = "GANFORGE_CACHE"
VERSION = 1
FITS = ("crop", "pad")
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
CHUNK = 256  # images decoded ahead of the writer


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ganforge" / "datasets"


class CachedImages:
    """uint8 [N, C, R, R] images in a raw file, indexed like a tensor (an int, a slice, or int indices)."""

    dtype = torch.uint8
    ndim = 4

    def __init__(self, path: Path, shape: tuple[int, int, int, int]):
        self.path, self.shape = path, torch.Size(shape)
        self.item_bytes = int(np.prod(shape[1:]))
        if path.stat().st_size != shape[0] * self.item_bytes:
            raise UserError(f"{path}: {path.stat().st_size} bytes, not the {shape[0]} images of its manifest")
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        weakref.finalize(self, os.close, self._fd)  # closed with the object, at exit too (a __del__ can run late)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, int):
            return self[torch.tensor([index])][0]
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        indices = torch.as_tensor(index, dtype=torch.int64).flatten()
        if len(indices) and (indices.min() < 0 or indices.max() >= len(self)):
            raise IndexError(f"image index out of range 0..{len(self) - 1}")
        out = np.empty((len(indices), *self.shape[1:]), dtype=np.uint8)
        flat = out.reshape(len(indices), self.item_bytes)
        for row, item in enumerate(indices.tolist()):
            flat[row] = np.frombuffer(os.pread(self._fd, self.item_bytes, item * self.item_bytes), dtype=np.uint8)
        return torch.from_numpy(out)


def fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for file in files:
        stat = file.stat()
        digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def folder_images(root: Path, files: list[Path], resolution: int, fit: str = "crop",
                  quiet: bool = False) -> CachedImages:
    """The folder's images at ``resolution`` from its cache, built first if there is none."""
    if fit not in FITS:
        raise UserError(f"unknown fit {fit!r} (choose from {', '.join(FITS)})")
    prints = fingerprint(files)
    key = hashlib.sha256(f"{root.resolve()}\0{resolution}\0{fit}\0{prints}\0{VERSION}".encode()).hexdigest()[:20]
    folder = cache_root() / key
    manifest = _read_manifest(folder)
    if manifest is None:
        with _building(folder, quiet):  # one builder: torchrun's ranks (or two runs) on one folder wait for it
            manifest = _read_manifest(folder) or _build(folder, root, files, resolution, fit, prints, quiet)
    elif not quiet:
        print(f"dataset cache: {manifest['images']} images at {resolution} px from {folder}")
    return CachedImages(folder / "images.u8", tuple(manifest["shape"]))


@contextlib.contextmanager
def _building(folder: Path, quiet: bool):
    """An exclusive lock on the cache folder (``fcntl.flock`` on ``.lock``, released when its holder exits, crashes
    included): whoever comes second waits, then finds the manifest the first wrote."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not quiet:
                print(f"dataset cache: waiting for another process building {folder}")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if manifest.get("version") == VERSION else None


def _mode(root: Path, files: list[Path]) -> str:
    """L where every image is grey, else RGB (headers only: nothing is decoded)."""
    from PIL import Image, UnidentifiedImageError

    for file in files:
        try:
            with Image.open(file) as image:
                if image.mode not in GRAY_MODES:
                    return "RGB"
        except (UnidentifiedImageError, OSError) as error:
            raise UserError(f"folder:{root}: cannot read image {file}: {error}") from error
    return "L"


def square(image, fit: str):
    """The centred square of ``image`` (crop), or ``image`` centred on a black square (pad)."""
    from PIL import Image

    width, height = image.size
    if fit == "crop":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return image.crop((left, top, left + side, top + side))
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side))
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def decode(file: Path, mode: str, resolution: int, fit: str) -> np.ndarray:
    """One image file -> uint8 [C, R, R]."""
    from PIL import Image

    with Image.open(file) as image:
        array = np.asarray(square(image.convert(mode), fit).resize((resolution, resolution), Image.LANCZOS))
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _build(folder: Path, root: Path, files: list[Path], resolution: int, fit: str, prints: str,
           quiet: bool) -> dict:
    from PIL import UnidentifiedImageError

    mode = _mode(root, files)
    shape = [len(files), 1 if mode == "L" else 3, resolution, resolution]
    folder.mkdir(parents=True, exist_ok=True)
    target = AtomicFile(folder / "images.u8")
    start = time.perf_counter()
    try:
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool, \
                tqdm(total=len(files), desc="dataset cache", unit="img", disable=quiet, dynamic_ncols=True) as bar:
            for begin in range(0, len(files), CHUNK):  # decoded on threads (Pillow releases the GIL), written in order
                chunk = files[begin : begin + CHUNK]
                try:
                    arrays = list(pool.map(lambda f: decode(f, mode, resolution, fit), chunk))
                except (UnidentifiedImageError, OSError) as error:
                    raise UserError(f"folder:{root}: cannot read an image: {error}") from error
                target.handle.write(np.stack(arrays).tobytes())
                bar.update(len(chunk))
        target.commit()
    except BaseException:
        target.discard()
        raise
    manifest = {"version": VERSION, "source": str(root.resolve()), "images": len(files), "shape": shape,
                "mode": mode, "fit": fit, "resolution": resolution, "fingerprint": prints,
                "bytes": int(np.prod(shape)), "built_seconds": round(time.perf_counter() - start, 1)}
    atomic_write_bytes(folder / "manifest.json", json.dumps(manifest, indent=2) + "\n")  # last: the cache is whole
    if not quiet:
        print(f"dataset cache: {len(files)} images at {resolution} px ({manifest['bytes'] / 2**20:.0f} MiB) built "
              f"in {manifest['built_seconds']:.0f}s at {folder}")
    return manifest
