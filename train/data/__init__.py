"""Data sources by name: ``load_data("ring" | "grid" | "digits" | "stacked-digits" | "shapes" |
"folder:PATH" | "npz:PATH" | "idx:PATH", resolution, seed)``."""

from __future__ import annotations

from pathlib import Path

from ganforge.errors import UserError

from .base import DataSource, TensorStream
from .digits import load_digits_source, load_stacked_digits_source
from .files import file_source_has_labels, load_folder, load_idx, load_npz
from .shapes import load_shapes_source
from .synthetic import load_mixture

BUILTIN = {
    "ring": lambda resolution, seed: load_mixture("ring", seed),
    "grid": lambda resolution, seed: load_mixture("grid", seed),
    "digits": load_digits_source,
    "stacked-digits": load_stacked_digits_source,
    "shapes": load_shapes_source,
}
FILE_SOURCES = {"folder": load_folder, "npz": load_npz, "idx": load_idx}
POINT_SOURCES = ("ring", "grid")
LABELLED_BUILTIN = ("digits", "stacked-digits", "shapes")


def check_spec(spec: str) -> None:
    """Validate a --data spec's form without loading anything."""
    prefix, sep, rest = spec.partition(":")
    if spec in BUILTIN or (sep and prefix in FILE_SOURCES and rest):
        return
    choices = ", ".join([*BUILTIN, *(f"{name}:PATH" for name in FILE_SOURCES)])
    raise UserError(f"unknown --data {spec!r} (choose from {choices})")


def spec_name(spec: str) -> str:
    """Short name for run folders: 'folder:/x/y' -> 'folder'."""
    return spec.partition(":")[0] if ":" in spec else spec


def has_labels(spec: str) -> bool:
    """Whether ``--data spec`` carries class labels (files are looked at, not decoded): recipes depend on it."""
    check_spec(spec)
    if spec in BUILTIN:
        return spec in LABELLED_BUILTIN
    prefix, _, rest = spec.partition(":")
    return file_source_has_labels(prefix, Path(rest).expanduser())


def load_data(spec: str, resolution: int, seed: int, fit: str = "crop", mirror: bool = False,
              quiet: bool = True) -> DataSource:
    """``fit``: how a folder's non-square images become square (crop or pad); ``mirror``: x-flipped copies as more
    data (``TensorStream``); ``quiet``: no progress bar while a folder's dataset cache is built."""
    check_spec(spec)
    prefix, _, rest = spec.partition(":")
    if fit != "crop" and prefix != "folder":
        raise UserError(f"--fit {fit} fits a folder's images to a square; --data {spec} is not a folder")
    if spec in BUILTIN:
        source = BUILTIN[spec](resolution, seed)
    elif prefix == "folder":
        source = load_folder(Path(rest).expanduser(), resolution, seed, fit, quiet)
    else:
        source = FILE_SOURCES[prefix](Path(rest).expanduser(), resolution, seed)
    if mirror:
        if not isinstance(source.stream, TensorStream):
            raise UserError(f"--mirror adds x-flipped copies of stored images; --data {spec} has none")
        stream = source.stream
        source.stream = TensorStream(stream.images, seed, stream.labels, mirror=True)
    return source


__all__ = ["DataSource", "POINT_SOURCES", "check_spec", "has_labels", "load_data", "spec_name"]
