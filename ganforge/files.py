"""Atomic file writes, used by every stage: a crash or Ctrl-C leaves the old file or the new one, never half.

A temp file is created beside the target with an unpredictable name, exclusively and without following
symlinks (``O_CREAT | O_EXCL | O_NOFOLLOW``), fsynced, then renamed over the target. The temp names share one
pattern, ``.NAME.tmp-<hex>``, so ``remove_stale_temps`` can clear what a SIGKILL left behind.

    atomic_write_bytes(Path("run/config.json"), text)
    atomic_write(Path("run/checkpoints/step-000100.pt"), lambda handle: torch.save(state, handle))
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMP_NAME = re.compile(r"^\..+\.tmp-[0-9a-f]{16}(\.[\w.]+)?$")
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def temp_path(path: Path, suffix: str = "") -> Path:
    """An unpredictable sibling name for ``path`` that ``remove_stale_temps`` recognises (``suffix`` for tools
    that insist on a file extension, e.g. ".pt2")."""
    return path.with_name(f".{path.name}.tmp-{secrets.token_hex(8)}{suffix}")


def open_exclusive(path: Path) -> BinaryIO:
    """Create ``path`` for writing; fails if anything (a file, a symlink) is already there."""
    return os.fdopen(os.open(path, _FLAGS, 0o644), "wb")


class AtomicFile:
    """A temp file beside ``path`` (``handle``) for writing over time: ``commit`` fsyncs it and renames it into
    place; ``discard`` removes it (a no-op once committed). ``atomic_write`` in one call; the sampler streams
    shards through it batch by batch."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tmp = temp_path(self.path)
        self.handle = open_exclusive(self.tmp)

    def commit(self) -> None:
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        self.handle.close()
        self.tmp.unlink(missing_ok=True)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(handle)`` on a fresh temp file beside ``path``, fsync it, then rename it into place."""
    target = AtomicFile(path)
    try:
        write(target.handle)
        target.commit()
    except BaseException:
        target.discard()
        raise


def atomic_write_bytes(path: Path, data: bytes | memoryview | str) -> None:
    """``atomic_write`` for data already in memory (text is written as UTF-8; buffers without a copy)."""
    payload = data.encode() if isinstance(data, str) else data
    atomic_write(path, lambda handle: handle.write(payload))


def atomic_link(target: Path, link: Path) -> None:
    """Make ``link`` a second name (hard link) for ``target`` atomically; copy where links are not supported."""
    tmp = temp_path(link)
    try:
        os.link(target, tmp)
    except OSError:
        atomic_write_bytes(link, Path(target).read_bytes())
        return
    os.replace(tmp, link)
    fsync_dir(link.parent)


def remove_stale_temps(folder: Path, recursive: bool = False) -> int:
    """Delete temp files of ganforge's pattern that a killed process left in ``folder``; returns how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    found = folder.rglob(".*.tmp-*") if recursive else folder.glob(".*.tmp-*")
    removed = 0
    for path in found:
        if TEMP_NAME.match(path.name) and (path.is_file() or path.is_symlink()):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some file systems refuse directory fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
