"""Feature extractors for image metrics, all local and reproducible (nothing is downloaded).

- ``DomainClassifier``: a small CNN that ganforge trains on the labelled training data (fixed seed, seconds on a
  CPU) and caches. Its penultimate layer gives the features for FD/KID/PR; its softmax says which class a
  sample shows and how confidently. Inception features describe photographs; on 8x8 digits or toy shapes a
  classifier of the domain itself is the better judge (as PacGAN's and VEEGAN's digit classifiers are).
- ``random_embedding``: a fixed-seed random convolutional network for data without labels. Its numbers compare
  runs on the same data, nothing more; reports say which extractor made them.
- ``Extractor(per_channel=True)``: stacked digits: the digit classifier applied to each channel, features
  concatenated.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganforge.errors import UserError
from ganforge.files import atomic_write

from ..data.base import to_unit_range

CLASSIFIER_SEED = 1234
HELD_OUT = 0.2  # share of the labelled images kept out of the classifier's training: the real-vs-real floor
CACHE_FORMAT = "ganforge-domain-classifier-v1"


def input_size(resolution: int, detail: int | None = None) -> int:
    """The extractor's input size: 16 px for data with at most 16 px of detail (the bundled 8x8 digits), else 32."""
    return 16 if min(resolution, detail or resolution) <= 16 else 32


class ConvFeatures(nn.Module):
    """[N, C, H, W] in [-1, 1] -> features [N, 4 * width], resized to ``size`` first."""

    def __init__(self, channels: int, size: int, width: int = 16):
        super().__init__()
        self.size = size
        block = lambda cin, cout: [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(True)]
        self.net = nn.Sequential(*block(channels, width), *block(width, width), nn.MaxPool2d(2),
                                 *block(width, 2 * width), nn.MaxPool2d(2),
                                 *block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dim = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.size)
        return self.net(x)


class DomainClassifier(nn.Module):
    def __init__(self, channels: int, num_classes: int, size: int, width: int = 16):
        super().__init__()
        self.body = ConvFeatures(channels, size, width)
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(self.body.dim, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class Extractor:
    """What the metrics need from a feature extractor: batched features and (for classifiers) probabilities."""

    name: str  # "domain-classifier", "random-conv" or "inception"
    body: nn.Module  # images [N, C, H, W] in [-1, 1] -> features [N, D]
    head: nn.Module | None = None  # features -> logits
    per_channel: bool = False  # stacked digits: apply to each channel on its own
    info: dict | None = None

    @torch.no_grad()
    def run(self, images: torch.Tensor, batch: int = 500) -> tuple[np.ndarray, np.ndarray | None]:
        """float [N, C, H, W] in [-1, 1] (or uint8, turned into floats a chunk at a time) -> features [N, D'] and class
        probabilities ([N, K], per channel [N, C, K])."""
        self.body.eval()
        features, probs = [], []
        for chunk in images.split(batch):
            n, c = chunk.shape[:2]
            chunk = to_unit_range(chunk) if chunk.dtype == torch.uint8 else chunk.float()
            x = chunk.reshape(n * c, 1, *chunk.shape[2:]) if self.per_channel else chunk
            f = self.body(x)
            if self.head is not None:
                p = self.head.eval()(f).softmax(dim=1)
                probs.append((p.view(n, c, -1) if self.per_channel else p).numpy())
            features.append(f.reshape(n, -1).numpy())
        return np.concatenate(features), (np.concatenate(probs) if probs else None)


def split_indices(count: int, seed: int = CLASSIFIER_SEED) -> tuple[np.ndarray, np.ndarray]:
    """A fixed train / held-out split of ``count`` labelled images."""
    order = np.random.default_rng(seed).permutation(count)
    held = max(1, int(round(count * HELD_OUT)))
    return np.sort(order[held:]), np.sort(order[:held])


def _shifted(x: torch.Tensor, generator: torch.Generator, pixels: int) -> torch.Tensor:
    """Random translations by up to ``pixels`` (zero padding): robustness to a generator's small offsets."""
    padded = F.pad(x, [pixels] * 4, value=-1.0)
    dx, dy = torch.randint(0, 2 * pixels + 1, (2,), generator=generator).tolist()
    return padded[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]]


def train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, size: int, epochs: int = 30,
                     seed: int = CLASSIFIER_SEED) -> tuple[DomainClassifier, dict]:
    """Train on the fixed train split of uint8 ``images`` [N, C, H, W]; report held-out accuracy."""
    with torch.random.fork_rng():  # leave the caller's RNG (a training run's) untouched
        torch.manual_seed(seed)
        return _train_classifier(images, labels, num_classes, size, epochs, seed)


def _train_classifier(images: torch.Tensor, labels: torch.Tensor, num_classes: int, size: int, epochs: int,
                      seed: int) -> tuple[DomainClassifier, dict]:
    generator = torch.Generator().manual_seed(seed)
    train_idx, held_idx = split_indices(len(images), seed)
    x = F.interpolate(to_unit_range(images), size=size, mode="bilinear", align_corners=False,
                      antialias=images.shape[-1] > size)
    model = DomainClassifier(images.shape[1], num_classes, size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=epochs * (
        (len(train_idx) + 63) // 64))
    x_train, y_train = x[train_idx], labels[train_idx]
    pixels = max(1, x.shape[-1] // 16)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x_train), generator=generator).split(64):
            loss = F.cross_entropy(model(_shifted(x_train[batch], generator, pixels)), y_train[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    with torch.no_grad():
        accuracy = lambda idx: float((model(x[idx]).argmax(1) == labels[idx]).float().mean())
        info = {"train_accuracy": accuracy(train_idx), "held_out_accuracy": accuracy(held_idx),
                "train_images": len(train_idx), "held_out_images": len(held_idx), "epochs": epochs,
                "seed": seed, "num_classes": num_classes}
    return model, info


def _fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    import hashlib

    digest = hashlib.sha256(images.contiguous().numpy().tobytes())
    digest.update(labels.to(torch.int64).numpy().tobytes())
    return digest.hexdigest()


def domain_classifier(images: torch.Tensor, labels: torch.Tensor, cache: Path | None, size: int,
                      per_channel: bool = False) -> Extractor:
    """Load the cached classifier for exactly these images and labels (``cache``, else the shared one), or train one
    and cache it in both."""
    num_classes = int(labels.max()) + 1
    if num_classes < 2:
        raise UserError("a domain classifier needs at least 2 classes in the labels")
    key = {"format": CACHE_FORMAT, "fingerprint": _fingerprint(images, labels), "shape": list(images.shape[1:]),
           "num_classes": num_classes, "size": size}
    shared = shared_cache(key)
    state = _load_cache(cache, key)
    if state is None and (state := _load_cache(shared, key)) is not None:
        _save_cache(cache, state)  # the run folder keeps the classifier that measured it
    if state is None:
        model, info = train_classifier(images, labels, num_classes, size)
        state = {"key": json.dumps(key), "info": json.dumps(info), "state": model.state_dict()}
        _save_cache(cache, state)
        try:
            _save_cache(shared, state)
        except OSError:  # a shared cache that cannot be written (a read-only home) costs the next run a retraining
            pass
    else:
        info = json.loads(state["info"])
        model = DomainClassifier(images.shape[1], num_classes, size)
        model.load_state_dict(state["state"])
    model.eval()
    return Extractor("domain-classifier", model.body, model.head, per_channel, info)


def shared_cache(key: dict) -> Path:
    """Where every run and evaluation of the same images and labels finds the classifier trained first: beside the
    dataset caches (``$GANFORGE_CACHE``, default ``~/.cache/ganforge/datasets``), named by the data's fingerprint."""
    from ..data.cache import cache_root

    return cache_root() / "classifiers" / f"{key['fingerprint'][:32]}-{key['size']}px.pt"


def _save_cache(cache: Path | None, state: dict) -> None:
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(cache, lambda handle: torch.save(state, handle))


def _load_cache(cache: Path | None, key: dict) -> dict | None:
    if cache is None or not cache.is_file():
        return None
    try:
        state = torch.load(cache, map_location="cpu", weights_only=True)
        return state if json.loads(state["key"]) == key else None
    except Exception:  # unreadable or from another data set: train again, overwrite
        return None


def random_embedding(channels: int, size: int, seed: int = CLASSIFIER_SEED) -> Extractor:
    """An untrained CNN with fixed-seed weights: features for data without labels.

    He-initialised with zero biases, so each convolution keeps its input's scale through the ReLUs. PyTorch's
    default initialisation shrinks the signal about 50x over the four layers: the features of shapes images spread by
    about 1e-3, FD read ~1e-6 for any generator (as if perfect) and KID's cubic kernel was flat (every value near 0)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        body = ConvFeatures(channels, size).eval()
        for layer in body.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                nn.init.zeros_(layer.bias)
    return Extractor("random-conv", body, None, False, {"seed": seed, "init": "he-normal"})
