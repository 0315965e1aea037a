"""Pictures of a run: the loss curve and, for 2D runs, samples over the mode centres (matplotlib, Agg)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ganforge.files import atomic_write_bytes


def _save_figure(figure, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_losses(records: list[dict], path: Path) -> None:
    rows = [r for r in records if "loss_d" in r]
    if not rows:
        return
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 3.5))
    steps = [r["step"] for r in rows]
    axis.plot(steps, [r["loss_d"] for r in rows], label="discriminator")
    axis.plot(steps, [r["loss_g"] for r in rows], label="generator")
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.grid(alpha=0.3)
    handles = axis.get_lines()
    adaptive = [(r["step"], r["augment_p"]) for r in rows if "augment_p" in r]
    if adaptive:  # --ada-target: the augmentation probability it steered, on its own 0-1 axis
        strength = axis.twinx()
        handles += strength.plot(*zip(*adaptive), color="tab:green", linestyle="--", label="augmentation p")
        strength.set_ylim(0, 1)
        strength.set_ylabel("augmentation p")
    axis.legend(handles=handles, labels=[h.get_label() for h in handles])
    _save_figure(figure, path)


QUALITY_PANELS = {"fd": ("fd", "kid"), "mode_overlap": ("mode_overlap", "high_quality")}


def plot_quality(records: list[dict], path: Path, primary: str) -> None:
    """The evaluations of a run over its steps: the primary metric and a second one beside it."""
    rows = [r for r in records if isinstance(r.get("eval"), dict)]
    if not rows:
        return
    plt = _pyplot()
    names = [n for n in QUALITY_PANELS.get(primary, (primary,)) if any(r["eval"].get(n) is not None for r in rows)]
    figure, axes = plt.subplots(1, max(1, len(names)), figsize=(4.2 * max(1, len(names)), 3.2), squeeze=False)
    for axis, name in zip(axes[0], names):
        points = [(r["step"], r["eval"][name]) for r in rows if r["eval"].get(name) is not None]
        axis.plot(*zip(*points), marker="o", markersize=3)
        axis.set_xlabel("step")
        axis.set_title(name + (" (primary)" if name == primary else ""))
        axis.grid(alpha=0.3)
        if name in ("fd", "kid") and all(v > 0 for _, v in points):
            axis.set_yscale("log")
    _save_figure(figure, path)


def plot_points(samples: np.ndarray, modes: np.ndarray, path: Path, title: str) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4, label="generated")
    axis.scatter(modes[:, 0], modes[:, 1], s=30, marker="x", color="red", label="modes")
    span = float(np.abs(modes).max()) * 1.5
    axis.set_xlim(-span, span)
    axis.set_ylim(-span, span)
    axis.set_aspect("equal")
    axis.set_title(title)
    axis.legend(loc="upper right", fontsize=7)
    _save_figure(figure, path)


def progress_video(samples: Path, path: Path, fps: float = 4.0) -> Path | None:
    """The fixed-seed sample grids of samples/step-*.png, in step order, as a video in the format of ``path``'s
    suffix, .gif or .mp4 (None: fewer than two grids)."""
    from PIL import Image

    from ganforge.images import save_video

    files = sorted(samples.glob("step-*.png"))
    if len(files) < 2:
        return None
    frames = []
    for file in files:
        with Image.open(file) as picture:
            frames.append(np.asarray(picture.convert("RGB")))
    if len({frame.shape for frame in frames}) > 1:
        return None  # grids of another size (a changed grid): nothing to animate
    save_video(np.stack(frames), path, fps)
    return path
