"""Every quality metric for one data source, against real features computed once (StyleGAN2-ADA's cached
real statistics). Training's ``--eval-every`` and ``ganforge eval`` both call ``Evaluator.evaluate``.

    evaluator = Evaluator(data, cache=run_dir / "eval")
    report = evaluator.evaluate(generated)  # float [N, C, H, W] in [-1, 1] (or [N, 2] points)
    floor = evaluator.real_floor()          # the same metrics, held-out real images against the reference

The primary metric (best checkpoint, the first column of tables) is FD for images and ``mode_overlap`` for 2D.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ganforge.errors import UserError
from ganforge.images import to_uint8

from ..data.base import DataSource
from .features import Extractor, domain_classifier, input_size, random_embedding, split_indices
from .frechet import frechet_distance_of, kernel_distance
from .memorization import copy_threshold, near_copy_share
from .modes import kl_to_uniform, mode_coverage
from .prdc import prdc

CONFIDENT = 0.9  # a sample is "recognised" when the classifier gives its class at least this probability
PRDC_MAX = 5000  # precision/recall use at most this many samples per side (k-NN cost grows as N^2)
COPY_SIZE = 64  # the near-copy check compares images at up to this size
REFERENCE_LIMIT = 10_000  # real images a folder's metrics are measured against (all of smaller sets)
STACKED_REFERENCE = 10_000  # stacked digits: reference stacks drawn from the classifier's train split
MIN_SAMPLES = {"points": 100, "images": 50}


@dataclass(frozen=True)
class Primary:
    name: str
    higher_is_better: bool

    def better(self, new: float | None, old: float | None) -> bool:
        if new is None or not math.isfinite(new):
            return False
        return old is None or (new > old if self.higher_is_better else new < old)


def copy_space(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Images (uint8, or floats in [-1, 1]) as the near-copy check compares them, a chunk at a time: uint8, as they
    are up to 64 x 64 and larger ones area-pooled to it (a copy stays a copy; 10,000 reference images at 256 px
    would take 7.9 GB as floats)."""
    def chunk_space(chunk: torch.Tensor) -> torch.Tensor:
        chunk = chunk if chunk.dtype == torch.uint8 else torch.from_numpy(to_uint8(chunk))
        if chunk.shape[-1] <= COPY_SIZE:
            return chunk
        return F.adaptive_avg_pool2d(chunk.float(), COPY_SIZE).round().to(torch.uint8)

    return torch.cat([chunk_space(chunk) for chunk in torch.as_tensor(images).split(1000)]).numpy()


class Evaluator:
    """``only_class`` k (labelled single-label data): the reference is class k's real images, and "recognised" is
    the share of samples confidently classified as k (per-class metrics for samples of a chosen class).
    ``classes_of`` (uint8 images -> int64 classes) puts the real images in classes other than the data's labels: a
    self-conditioned run's pseudo-classes by its clusters. Class k's reference is then the real images of
    pseudo-class k; where the data has labels, "cluster_label" is the label most of those real images have and
    "class_share" the share of samples classified as it."""

    def __init__(self, data: DataSource, cache: Path | None = None, extractor: Extractor | None = None,
                 only_class: int | None = None, classes_of=None):
        self.data, self.kind, self.only_class, self.pseudo = data, data.kind, only_class, classes_of is not None
        self.stacked = data.name == "stacked-digits"
        self.primary = Primary("mode_overlap", True) if self.kind == "points" else Primary("fd", False)
        if self.kind == "points":
            return
        images, labels = data.stream.images, data.labels  # uint8 [N, C, H, W] (stacked digits: the single digits)
        rows = torch.arange(len(images))
        if len(images) > REFERENCE_LIMIT:  # a folder larger than memory: an evenly spaced subset of its cache
            rows = torch.linspace(0, len(images) - 1, REFERENCE_LIMIT).round().long()
            labels = None if labels is None else labels[rows]
        labelled = labels is not None
        if labelled and (len(rows) < len(images) or not torch.is_tensor(images)):
            images, rows = images[rows], torch.arange(len(rows))  # the classifier trains on them all: read them once
        size = input_size(images.shape[-1], data.extra.get("detail"))
        self.extractor = extractor or (
            domain_classifier(images, labels, cache / "classifier.pt" if cache else None, size,
                              per_channel=self.stacked) if labelled
            else random_embedding(images.shape[1], size))
        train_idx, held_idx = split_indices(len(rows))
        if only_class is not None:
            chosen = labels if classes_of is None else torch.cat([classes_of(images[rows[i : i + 1024]])
                                                                  for i in range(0, len(rows), 1024)])
            if chosen is None or self.stacked or not 0 <= only_class <= int(chosen.max()):
                raise UserError(f"per-class metrics need single-label data with class {only_class}")
            train_idx = train_idx[(chosen[train_idx] == only_class).numpy()]
            held_idx = held_idx[(chosen[held_idx] == only_class).numpy()]
            if min(len(train_idx), len(held_idx)) < 2:
                raise UserError(f"class {only_class} has {len(train_idx) + len(held_idx)} real images here: too few "
                                f"to measure it on its own")
        self.train_images, self.held_images = images[rows[train_idx]], images[rows[held_idx]]
        if self.stacked:
            self.train_images = stack_digits(self.train_images, STACKED_REFERENCE, seed=1)
            self.held_images = stack_digits(self.held_images, STACKED_REFERENCE, seed=2)
        if labelled and not self.stacked:
            counts = torch.bincount(labels[train_idx], minlength=int(labels.max()) + 1).double()
            self.class_prior = (counts / counts.sum()).numpy()
        self.reference, _ = self.extractor.run(self.train_images)  # uint8: made floats a chunk at a time
        self.copy_reference = copy_space(self.train_images)
        self.copy_threshold = None if self.stacked else copy_threshold(self.copy_reference)

    @property
    def description(self) -> str:
        if self.kind == "points":
            return f"2D mode coverage ({len(self.data.modes)} modes, high quality within 3 sigma)"
        info = self.extractor.info or {}
        accuracy = f", held-out accuracy {100 * info['held_out_accuracy']:.1f}%" if "held_out_accuracy" in info else ""
        note = "" if self.extractor.head else (" (no labels: a fixed-seed random embedding; compare runs on the "
                                               "same data only)")
        return f"features: {self.extractor.name}{accuracy}{note}"

    def minimum_samples(self) -> int:
        return MIN_SAMPLES[self.kind]

    def evaluate(self, generated: torch.Tensor | np.ndarray) -> dict:
        generated = torch.as_tensor(generated).float()
        if len(generated) < self.minimum_samples():
            raise UserError(f"quality metrics need at least {self.minimum_samples()} samples, got {len(generated)}")
        if self.kind == "points":
            if generated.ndim != 2 or generated.shape[1] != 2:
                raise UserError(f"2D data wants [N, 2] samples, got {list(generated.shape)}")
            return {"n": len(generated), **mode_coverage(generated, self.data.modes, self.data.mode_sigma)}
        expected = tuple(self.train_images.shape[1:])
        if tuple(generated.shape[1:]) != expected:
            raise UserError(f"samples of shape {list(generated.shape[1:])} do not match the data's {list(expected)}")
        features, probs = self.extractor.run(generated)
        report = {"n": len(generated), **self._distribution_metrics(features, probs)}
        if not self.stacked:  # stacked digits have 1797^3 possible training images: no copies to look for
            report.update(near_copy_share(copy_space(generated), self.copy_reference, self.copy_threshold))
        return report

    def real_floor(self) -> dict:
        """Held-out real images (stacked: stacks of held-out digits) against the same reference."""
        if self.kind == "points":
            return {}
        features, probs = self.extractor.run(self.held_images)
        report = {"n": len(self.held_images), **self._distribution_metrics(features, probs)}
        if not self.stacked:
            report.update(near_copy_share(copy_space(self.held_images), self.copy_reference, self.copy_threshold))
        return report

    def _distribution_metrics(self, features: np.ndarray, probs: np.ndarray | None) -> dict:
        report = {"fd": frechet_distance_of(features, self.reference),
                  "kid": kernel_distance(features, self.reference)}
        report.update(prdc(self.reference[:PRDC_MAX], features[:PRDC_MAX]))
        if probs is None:
            return report
        if self.stacked:  # [N, 3, 10]: the mode is the triple of per-channel digits
            digits = probs.argmax(axis=2)
            modes = digits[:, 0] * 100 + digits[:, 1] * 10 + digits[:, 2]
            counts = np.bincount(modes, minlength=1000)
            report.update({"modes": int((counts > 0).sum()), "num_modes": 1000,
                           "mode_kl": kl_to_uniform(torch.from_numpy(counts)),
                           "recognised": float((probs.max(axis=2) >= CONFIDENT).all(axis=1).mean())})
            return report
        classes = probs.argmax(axis=1)
        if self.only_class is not None and self.pseudo:  # the label most of the pseudo-class's real images have
            label = int(np.argmax(self.class_prior))
            return report | {"cluster_label": label, "class_share": float((classes == label).mean()),
                             "recognised": float((probs.max(axis=1) >= CONFIDENT).mean())}
        if self.only_class is not None:
            chosen = classes == self.only_class
            report.update({"recognised": float((chosen & (probs.max(axis=1) >= CONFIDENT)).mean()),
                           "class_share": float(chosen.mean())})
            return report
        counts = np.bincount(classes, minlength=len(self.class_prior))
        p = counts / counts.sum()
        kl = float(np.sum(p[p > 0] * np.log(p[p > 0] / self.class_prior[p > 0])))
        report.update({"recognised": float((probs.max(axis=1) >= CONFIDENT).mean()),
                       "classes": int((counts > 0).sum()), "num_classes": len(counts), "class_kl": max(0.0, kl)})
        return report


def stack_digits(digits: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """``count`` stacked-digit images [count, 3, H, W] made of 3 digits drawn independently from ``digits``."""
    picks = torch.randint(len(digits), (count, 3), generator=torch.Generator().manual_seed(seed))
    return digits[picks.flatten(), 0].view(count, 3, *digits.shape[-2:])
