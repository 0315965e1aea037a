"""Checkpoints: a dict of state_dicts and plain values, written atomically, read with weights_only=True.

Layout of a checkpoint (``format`` = "ganforge-checkpoint", ``version`` = 1)::

    step, generator_config, train_config, data_name, ganforge_version, torch_version,
    generator, generator_ema, discriminator, optimizer_g, optimizer_d, scaler_g, scaler_d,
    rng {torch, latents}, data (stream position), skipped_steps {d, g}

Nothing else (no timestamps), so an uninterrupted run and a resumed one write identical files.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch

from ganforge.errors import UserError
from ganforge.files import atomic_link, atomic_write

FORMAT = "ganforge-checkpoint"
VERSION = 1
STEP_FILE = re.compile(r"step-(\d{6,})\.pt$")


def save_checkpoint(state: dict, folder: Path, step: int, keep: int) -> Path:
    """Write checkpoints/step-NNNNNN.pt and point checkpoints/latest.pt at it; keep the newest ``keep``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:06d}.pt"
    atomic_write(path, lambda handle: torch.save(state, handle))
    atomic_link(path, folder / "latest.pt")
    for old in list_checkpoints(folder)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(folder: Path) -> list[Path]:
    """step-*.pt files in step order."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found)]


def find_checkpoint(path: str | Path, name: str | None = None) -> Path:
    """A checkpoint file, or a run folder (its checkpoints/latest.pt, else its newest step-*.pt).

    ``name`` picks another checkpoint of a run folder: "best" (the best evaluation so far), "latest", or a
    step file such as "step-001000".
    """
    path = Path(path)
    if name is not None:
        if not path.is_dir():
            raise UserError(f"--checkpoint {name} needs a run folder, got {path}")
        chosen = path / "checkpoints" / f"{name.removesuffix('.pt')}.pt"
        if not chosen.is_file():
            hint = " (best.pt is written by runs that evaluate: --eval-every)" if name == "best" else ""
            raise UserError(f"{path}: no checkpoint {chosen.name}{hint}")
        return chosen
    if path.is_file():
        return path
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    folder = path / "checkpoints"
    if (folder / "latest.pt").is_file():
        return folder / "latest.pt"
    found = list_checkpoints(folder)
    if not found:
        raise UserError(f"{path}: no checkpoint found (expected {folder}/latest.pt or step-*.pt)")
    return found[-1]


def load_checkpoint(path: str | Path) -> dict:
    """Load and check a ganforge checkpoint; any problem becomes one clear UserError."""
    path = find_checkpoint(path)
    if not zipfile.is_zipfile(path):  # torch.save always writes a zip archive
        raise UserError(f"{path}: not a readable checkpoint (truncated or corrupt?): not a torch zip archive")
    _check_crcs(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UserError(f"{path}: refused: the file holds pickled code or objects, which ganforge never "
                        "writes and will not run (weights_only=True)") from error
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path}: not a readable checkpoint (truncated or corrupt?): {first_line}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not a ganforge checkpoint")
    if state.get("version") != VERSION:
        raise UserError(f"{path}: checkpoint version {state.get('version')} is not supported (want {VERSION})")
    return state


def _check_crcs(path: Path) -> None:
    """Verify every member's zip CRC-32 (torch.save records them; torch.load does not check them), so one
    flipped byte in the tensor data is refused instead of loaded."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise UserError(f"{path}: not a readable checkpoint (truncated or corrupt?): {error}") from None
    except Exception as error:  # zlib.error and friends from a damaged member  # noqa: BLE001
        raise UserError(f"{path}: corrupt checkpoint: {error}") from None
    if bad is not None:
        raise UserError(f"{path}: corrupt checkpoint: checksum (CRC-32) mismatch in {bad}")


def load_module_state(module: torch.nn.Module, state_dict: dict, what: str, path: str | Path) -> None:
    """load_state_dict with an error that names the mismatch instead of a page of keys."""
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as error:
        raise UserError(f"{path}: the {what} in this checkpoint does not fit the model "
                        f"(another architecture?): {str(error).splitlines()[0]}") from error


def load_generator(path: str | Path, weights: str = "ema") -> tuple[torch.nn.Module, dict]:
    """Rebuild the generator from a checkpoint alone (no training flags needed), in eval mode on the CPU.

    ``weights`` is "ema" (the averaged weights, the default everywhere downstream) or "raw".
    Returns the module and the checkpoint's plain fields (step, configs, versions, ``path``).
    """
    from .models import build_generator

    if weights not in ("ema", "raw"):
        raise UserError(f"unknown weights {weights!r} (choose ema or raw)")
    path = find_checkpoint(path)
    state = load_checkpoint(path)
    generator = build_generator(state["generator_config"])
    key = "generator_ema" if weights == "ema" else "generator"
    load_module_state(generator, state[key], f"{weights} generator", path)
    info = {k: v for k, v in state.items() if not isinstance(v, (dict, torch.Tensor)) or k.endswith("_config")}
    info["path"] = str(path)
    return generator.eval().requires_grad_(False), info
