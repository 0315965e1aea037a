"""What `ganforge eval` shows: a table (generator against the real floor) and a picture with the metric line."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from ganforge.files import atomic_write_bytes
from ganforge.images import image_grid, to_uint8

# (key, label, digits): the rows of the table, in order; a key missing from a report is left out
ROWS = [("fd", "Fréchet distance (lower is better)", 3), ("kid", "KID", 5), ("precision", "precision", 3),
        ("recall", "recall", 3), ("density", "density", 3), ("coverage", "coverage", 3),
        ("recognised", "recognised (confidence >= 0.9)", 3), ("class_share", "classified as the chosen class", 3),
        ("classes", "classes present", 0),
        ("class_kl", "KL(classes || training classes)", 4), ("modes", "modes (of 1,000 digit triples)", 0),
        ("mode_kl", "KL(modes || uniform)", 4), ("near_copies", "near-copies of training images", 4),
        ("modes_captured", "modes captured", 0), ("high_quality", "high quality (within 3 sigma)", 4),
        ("reverse_kl", "reverse KL", 4), ("mode_overlap", "mode overlap (primary)", 4), ("n", "samples", 0)]


def _cell(value, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:.{digits}f}"


def table(result: dict) -> str:
    generated, real = result["generated"], result["real"]
    controls = "".join([f", truncation {result['truncation']:g}" if result.get("truncation", 1) != 1 else "",
                        f", class {','.join(map(str, result['class']))}" if result.get("class") else "",
                        _reference(result)])
    lines = [f"{result['model']} (step {result['step']}, {result['backend']}, seeds {result['seeds']}{controls}) "
             f"vs --data {result['data']}; {result['features']}",
             "| metric | generated | real held-out (floor) |", "|---|---|---|"]
    for key, label, digits in ROWS:
        if key == "class_share" and "cluster_label" in generated:
            label = f"classified as {generated['cluster_label']}, the label most of its real images have"
        if key in generated:
            lines.append(f"| {label} | {_cell(generated[key], digits)} | {_cell(real.get(key), digits)} |")
    if result.get("pseudo_classes"):
        lines.append(pseudo_class_line(result["pseudo_classes"]))
    return "\n".join(lines)


def _reference(result: dict) -> str:
    if result.get("per_class") is None:
        return ""
    if result.get("per_class_by") == "clusters":
        return " (reference: the real images of that pseudo-class, by the run's clusters)"
    return " (reference: that class's real images)"


def pseudo_class_line(pseudo: dict) -> str:
    """Self-conditioned models: the pseudo-classes G draws from (and the clusters' purity, where labels were known)."""
    per = " per channel" if pseudo.get("per_channel") else ""
    merged = f" (merged from {pseudo['merged_from']} clusters)" if pseudo.get("merged_from") else ""
    line = (f"pseudo-classes (self-conditional): {pseudo['count']}{merged}{per}, shares "
            f"{100 * pseudo['smallest_share']:.1f}% to {100 * pseudo['largest_share']:.1f}%")
    if pseudo.get("purity") is not None:
        line += f", cluster purity against the ignored labels {100 * pseudo['purity']:.1f}%"
    return line


def metric_line(report: dict) -> str:
    if "modes_captured" in report:
        return (f"modes {report['modes_captured']}/{report['num_modes']}, high quality "
                f"{100 * report['high_quality']:.1f}%, reverse KL {_cell(report['reverse_kl'], 3)}")
    parts = [f"FD {report['fd']:.3g}", f"KID {report['kid']:.4f}", f"P {report['precision']:.2f}",
             f"R {report['recall']:.2f}"]
    if "modes" in report:
        parts.append(f"modes {report['modes']}/1000, KL {_cell(report['mode_kl'], 3)}")
    if "recognised" in report:
        parts.append(f"recognised {100 * report['recognised']:.0f}%")
    return ", ".join(parts) + f" (n={report['n']:,})"


def sorted_by_class(generated: torch.Tensor, probs: np.ndarray | None, per_class: int = 10,
                    count: int = 100) -> torch.Tensor:
    """Up to ``per_class`` samples of each predicted class, class by class; the first ``count`` without classes."""
    if probs is None:
        return generated[:count]
    classes = probs.argmax(axis=-1)
    classes = classes[:, 0] if classes.ndim == 2 else classes  # stacked digits: by the first channel's digit
    picks = [np.flatnonzero(classes == c)[:per_class] for c in range(probs.shape[-1])]
    return generated[torch.from_numpy(np.concatenate(picks)).long()][: max(count, per_class * 10)]


def save_picture(generated: torch.Tensor, evaluator, result: dict, path: Path) -> Path:
    from ganforge.train.plots import _pyplot

    plt = _pyplot()
    title = f"{Path(result['model']).name}, step {result['step']}\n{metric_line(result['generated'])}"
    if evaluator.kind == "points":
        figure, axis = plt.subplots(figsize=(5, 5))
        points, modes = generated[:2500].numpy(), evaluator.data.modes.numpy()
        axis.scatter(points[:, 0], points[:, 1], s=2, alpha=0.4)
        axis.scatter(modes[:, 0], modes[:, 1], s=30, marker="x", color="red")
        axis.set_aspect("equal")
    else:
        sample = generated[:2000]
        _, probs = evaluator.extractor.run(sample) if evaluator.extractor.head is not None else (None, None)
        grid = image_grid(to_uint8(sorted_by_class(sample, probs)), columns=10)
        figure, axis = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.6))
        axis.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", interpolation="nearest")
        axis.axis("off")
    axis.set_title(title, fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
    return path
