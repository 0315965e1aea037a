"""`ganforge eval`: generate samples from fixed seeds through a Runner (as sampling does) and measure them with
the same metrics training's --eval-every uses (ganforge.train.metrics), against cached real features.

    result = evaluate_model(EvalConfig(model="runs/00000-digits-dcgan", n=10_000))
    result["generated"]["fd"], result["real"]["fd"]   # the generator, and real held-out images (the floor)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ganforge.errors import UserError
from ganforge.export.model_source import ModelSource, resolve_model
from ganforge.files import atomic_write_bytes
from ganforge.images import to_uint8
from ganforge.latents import LatentControls
from ganforge.serve.runtime.latent_space import LatentSpace
from ganforge.serve.runtime.model_files import model_for_backend
from ganforge.serve.runtime.runners import open_runner
from ganforge.train.clusters import DISCRIMINATOR, Clusters
from ganforge.train.data import load_data
from ganforge.train.data.base import to_unit_range
from ganforge.train.metrics.evaluator import MIN_SAMPLES, Evaluator
from ganforge.train.records import finite_or_none
from ganforge.train.trainer import checkpoint_discriminator, discriminator_features

FEATURES = ("auto", "inception")
DEFAULT_N = {"points": 2500, "stacked-digits": 26_000, "images": 10_000}  # PacGAN's counts; 10k for the rest
BACKEND_FOR_KIND = {"checkpoint": "torch", "onnx": "onnxruntime", "aoti": "aoti", "engine": "tensorrt"}


@dataclass(frozen=True)
class EvalConfig:
    model: str  # run folder, checkpoint, .onnx, .pt2 or .engine
    out: str | None = None  # default: RUN/eval, or MODEL-eval/ beside a model file
    checkpoint: str | None = None  # run folders: "best", "latest", "step-001000"
    n: int | None = None  # samples (seeds 0..n-1); default by data kind
    data: str | None = None  # the data to compare with; default: what the model was trained on
    backend: str | None = None  # default: torch for checkpoints, else by file suffix
    device: str = "cpu"
    batch_size: int = 500
    features: str = "auto"  # "auto": domain classifier (labelled data) or random embedding; or "inception"
    weights: str | None = None  # --features inception: TorchScript Inception-v3 (inception-2015-12-05.pt)
    quiet: bool = False
    truncation: float = 1.0  # latent controls, as `ganforge sample` applies them
    classes: tuple[int, ...] | None = None  # a conditional model's class for every sample (per-class metrics)

    def __post_init__(self) -> None:
        if self.features not in FEATURES:
            raise UserError(f"unknown --features {self.features!r} (choose from {', '.join(FEATURES)})")
        if self.features == "inception" and not self.weights:
            raise UserError("--features inception needs --weights PATH (the Inception-v3 TorchScript file)")
        if self.weights and not Path(self.weights).is_file():
            raise UserError(f"--weights {self.weights}: no such file")
        if self.n is not None and self.n < 1:
            raise UserError(f"--n must be at least 1, got {self.n}")
        if self.batch_size < 1:
            raise UserError("--batch-size must be at least 1")
        LatentControls(self.truncation)


def model_description(config: EvalConfig) -> tuple[ModelSource, str, str, dict]:
    """The resolved model, its backend (torch for checkpoints, else by file kind), the file that backend loads and
    what the model says of itself (data, step, pseudo-classes)."""
    source = resolve_model(config.model, config.checkpoint)
    if source.is_checkpoint:
        state = source.checkpoint_state
        meta = {"data": state["train_config"]["data"], "fit": state["train_config"].get("fit", "crop"),
                "step": state["step"], "checkpoint": str(source.file),
                "pseudo_classes": pseudo_classes(state["generator_config"], state.get("clusters")),
                "clusters": state.get("clusters"), "state": state}
    else:
        step = source.metadata.get("training_step")
        meta = {"data": source.metadata.get("data"), "step": int(step) if step else None,
                "pseudo_classes": pseudo_classes(source.generator_config, None)}
    backend = config.backend or BACKEND_FOR_KIND[source.kind]
    return source, backend, model_for_backend(source, backend, quiet=config.quiet), meta


def pseudo_classes(generator_config: dict, clusters: dict | None) -> dict | None:
    """A self-conditioned generator's pseudo-classes: how many, their shares (the ones G draws with) and, where the
    run ignored labels it had, how pure the clusters were against them."""
    if generator_config.get("class_source") != "clusters":
        return None
    shares = generator_config["class_prior"]
    report = {"count": len(shares), "per_channel": generator_config.get("class_groups", 1) > 1, "shares": shares,
              "smallest_share": min(shares), "largest_share": max(shares)}
    if clusters is not None:
        report |= {"features": clusters.get("features"), "purity": clusters.get("purity"),
                   "merged_from": clusters.get("merged_from")}
    return report


def _per_class(config: EvalConfig, data, meta: dict) -> tuple[int | None, Callable | None]:
    """The class whose real images are the reference, and how real images get their class where it is not their
    label: a chosen class of a model trained on the data's own labels, or a pseudo-class of a self-conditioned
    checkpoint (the real images its clusters put there). Classes per channel (stacked digits), and pseudo-classes of
    an exported file (which does not carry the clusters), are compared with the whole data."""
    if not config.classes or len(config.classes) != 1:
        return None, None
    if meta.get("pseudo_classes"):
        if not meta.get("clusters"):
            return None, None
        clusters = Clusters.from_state(meta["clusters"], meta["checkpoint"])
        if clusters.features == DISCRIMINATOR:  # re-clustered during training: embedded by the checkpoint's D
            discriminator = checkpoint_discriminator(meta["state"], meta["checkpoint"])
            clusters.embed = discriminator_features(discriminator)
        return config.classes[0], lambda images: clusters.assign(to_unit_range(images))
    if data.labels is None or data.name == "stacked-digits":
        return None, None
    return config.classes[0], None


def _per_class_by(evaluator) -> str | None:
    """How the per-class reference was chosen: the real images with that label, or in that cluster."""
    if evaluator.only_class is None:
        return None
    return "clusters" if evaluator.pseudo else "labels"


def generate(runner, n: int, batch_size: int, quiet: bool, space: LatentSpace,
             controls: LatentControls | None = None) -> torch.Tensor:
    """Samples for seeds 0..n-1 (the seed contract of sampling), float32 in the generator's own range."""
    batch = min(batch_size, runner.info.max_batch)
    chunks = []
    with tqdm(total=n, desc="generate", unit="img", disable=quiet, dynamic_ncols=True) as bar:
        for start in range(0, n, batch):
            seeds = range(start, min(start + batch, n))
            chunks.append(np.asarray(runner.infer(space.latents(seeds, controls)), dtype=np.float32))
            bar.update(len(seeds))
    return torch.from_numpy(np.concatenate(chunks))


def evaluate_model(config: EvalConfig) -> dict:
    source, backend, model_path, meta = model_description(config)
    data_spec = config.data or meta.get("data")
    if not data_spec or data_spec == "unknown":
        raise UserError(f"{config.model}: the model does not say what it was trained on: give --data")
    with open_runner(backend, model_path, config.device) as runner:
        shape = runner.info.output_shape
        kind = "points" if len(shape) == 1 else "images"
        fit = meta.get("fit", "crop") if data_spec.startswith("folder:") else "crop"  # as trained (checkpoints say)
        data = load_data(data_spec, shape[-1] if kind == "images" else 32, seed=0, fit=fit, quiet=config.quiet)
        if data.kind != kind or (kind == "images" and tuple(data.sample_shape) != tuple(shape)):
            raise UserError(f"the model makes {kind} of shape {list(shape)} but --data {data_spec} has "
                            f"{data.kind} of shape {list(data.sample_shape)}: wrong model or --data")
        n = config.n or DEFAULT_N.get(data.name, DEFAULT_N[kind])
        if n < MIN_SAMPLES[kind]:  # before the evaluator, which may first train a classifier for a minute
            raise UserError(f"--n {n} is too few: these metrics need at least {MIN_SAMPLES[kind]}")
        out = Path(config.out) if config.out else default_out(source)
        extractor = None
        if config.features == "inception":
            if kind != "images":
                raise UserError("--features inception is for image models; 2D models use mode coverage")
            from .inception import inception_extractor

            extractor = inception_extractor(Path(config.weights))
        space = LatentSpace.of(runner.info)
        controls = space.controls(config.truncation, config.classes)
        only_class, classes_of = _per_class(config, data, meta)
        evaluator = Evaluator(data, cache=out, extractor=extractor, only_class=only_class, classes_of=classes_of)
        generated = generate(runner, n, config.batch_size, config.quiet, space, controls)
        info = runner.info
    result = {"model": str(config.model), "backend": backend, "model_file": model_path, "data": data_spec,
              "step": meta.get("step"), "checkpoint": meta.get("checkpoint"), "seeds": f"0-{n - 1}",
              "features": evaluator.description, "primary": evaluator.primary.name,
              "truncation": config.truncation, "class": list(config.classes) if config.classes else None,
              "per_class": evaluator.only_class, "per_class_by": _per_class_by(evaluator),
              "pseudo_classes": meta.get("pseudo_classes"),
              "generated": evaluator.evaluate(generated), "real": evaluator.real_floor(),
              "precision": info.precision, "device": info.device}
    if config.features == "inception":  # the standard FID/KID: torchmetrics on the Inception features
        from .inception import torchmetrics_fid_kid

        fake = torch.from_numpy(to_uint8(generated))
        result["generated"].update(torchmetrics_fid_kid(extractor, evaluator.train_images, fake))
        result["real"].update(torchmetrics_fid_kid(extractor, evaluator.train_images, evaluator.held_images))
    result = finite_or_none(result)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "eval.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
    from .report import save_picture

    result["picture"] = str(save_picture(generated, evaluator, result, out / "eval.png"))
    result["out"] = str(out)
    return result


def default_out(source: ModelSource) -> Path:
    """RUN/eval for a run folder, else MODEL-eval/ beside the checkpoint or file named."""
    if source.given.is_dir():
        return source.given / "eval"
    return source.given.with_name(source.given.stem + "-eval")
