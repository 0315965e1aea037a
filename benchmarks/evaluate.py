"""`ganforge eval`: generate samples from fixed seeds through a Runner (as sampling does) and measure them with
the same metrics training's --eval-every uses (ganforge.train.metrics), against cached real features.

    result = evaluate_model(EvalConfig(model="runs/00000-digits-dcgan", n=10_000))
    result["generated"]["fd"], result["real"]["fd"]   # the generator, and real held-out images (the floor)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ganforge.errors import UserError
from ganforge.export.metadata import read_metadata
from ganforge.files import atomic_write_bytes
from ganforge.images import to_uint8
from ganforge.latents import latents_for_seeds
from ganforge.serve.runtime.model_files import is_training_output, model_for_backend
from ganforge.serve.runtime.runners import open_runner
from ganforge.train.checkpoint import find_checkpoint, load_checkpoint
from ganforge.train.data import load_data
from ganforge.train.metrics.evaluate import Evaluator
from ganforge.train.records import finite_or_none

FEATURES = ("auto", "inception")
DEFAULT_N = {"points": 2500, "stacked-digits": 26_000, "images": 10_000}  # PacGAN's counts; 10k for the rest
BACKEND_FOR_SUFFIX = {".onnx": "onnxruntime", ".pt2": "aoti", ".engine": "tensorrt"}


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


def model_description(config: EvalConfig) -> tuple[str, str, dict]:
    """(backend, model file, metadata) for the target: checkpoints through torch, files by their suffix."""
    path = Path(config.model)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if is_training_output(path):
        checkpoint = find_checkpoint(path, config.checkpoint)
        state = load_checkpoint(checkpoint)
        meta = {"data": state["train_config"]["data"], "step": state["step"], "checkpoint": str(checkpoint),
                "pseudo_classes": pseudo_classes(state["generator_config"], state.get("clusters"))}
        backend = config.backend or "torch"
        return backend, model_for_backend(checkpoint, backend, quiet=config.quiet), meta
    if config.checkpoint:
        raise UserError("--checkpoint picks a checkpoint of a run folder; this is a model file")
    backend = config.backend or BACKEND_FOR_SUFFIX.get(path.suffix)
    if backend is None:
        raise UserError(f"{path}: not a run folder, checkpoint (.pt) or model file (.onnx, .pt2, .engine)")
    meta = read_metadata(path)
    generator = json.loads(meta.get("generator_config", "{}"))
    return backend, model_for_backend(path, backend, quiet=config.quiet), {
        "data": meta.get("data"), "step": meta.get("step"), "pseudo_classes": pseudo_classes(generator, None)}


def pseudo_classes(generator_config: dict, clusters: dict | None) -> dict | None:
    """A self-conditioned generator's pseudo-classes: how many, their shares (the ones G draws with) and, where the
    run ignored labels it had, how pure the clusters were against them."""
    if generator_config.get("class_source") != "clusters":
        return None
    shares = generator_config["class_prior"]
    report = {"count": len(shares), "per_channel": generator_config.get("class_groups", 1) > 1, "shares": shares,
              "smallest_share": min(shares), "largest_share": max(shares)}
    if clusters is not None:
        report |= {"features": clusters.get("features"), "purity": clusters.get("purity")}
    return report


def generate(runner, n: int, batch_size: int, quiet: bool) -> torch.Tensor:
    """Samples for seeds 0..n-1 (the seed contract of sampling), float32 in the generator's own range."""
    z_dim, batch = runner.info.z_dim, min(batch_size, runner.info.max_batch)
    chunks = []
    with tqdm(total=n, desc="generate", unit="img", disable=quiet, dynamic_ncols=True) as bar:
        for start in range(0, n, batch):
            seeds = range(start, min(start + batch, n))
            chunks.append(np.asarray(runner.infer(latents_for_seeds(seeds, z_dim)), dtype=np.float32))
            bar.update(len(seeds))
    return torch.from_numpy(np.concatenate(chunks))


def evaluate_model(config: EvalConfig) -> dict:
    backend, model_path, meta = model_description(config)
    data_spec = config.data or meta.get("data")
    if not data_spec or data_spec == "unknown":
        raise UserError(f"{config.model}: the model does not say what it was trained on: give --data")
    with open_runner(backend, model_path, config.device) as runner:
        shape = runner.info.output_shape
        kind = "points" if len(shape) == 1 else "images"
        data = load_data(data_spec, shape[-1] if kind == "images" else 32, seed=0)
        if data.kind != kind or (kind == "images" and tuple(data.sample_shape) != tuple(shape)):
            raise UserError(f"the model makes {kind} of shape {list(shape)} but --data {data_spec} has "
                            f"{data.kind} of shape {list(data.sample_shape)}: wrong model or --data")
        out = Path(config.out) if config.out else default_out(Path(config.model))
        extractor = None
        if config.features == "inception":
            if kind != "images":
                raise UserError("--features inception is for image models; 2D models use mode coverage")
            from .inception import inception_extractor

            extractor = inception_extractor(Path(config.weights))
        evaluator = Evaluator(data, cache=out, extractor=extractor)
        n = config.n or DEFAULT_N.get(data.name, DEFAULT_N[kind])
        if n < evaluator.minimum_samples():
            raise UserError(f"--n {n} is too few: these metrics need at least {evaluator.minimum_samples()}")
        generated = generate(runner, n, config.batch_size, config.quiet)
        info = runner.info
    result = {"model": str(config.model), "backend": backend, "model_file": model_path, "data": data_spec,
              "step": meta.get("step"), "checkpoint": meta.get("checkpoint"), "seeds": f"0-{n - 1}",
              "features": evaluator.description, "primary": evaluator.primary.name,
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
    from .eval_report import save_picture

    result["picture"] = str(save_picture(generated, evaluator, result, out / "eval.png"))
    result["out"] = str(out)
    return result


def default_out(model: Path) -> Path:
    if model.is_dir():
        return model / "eval"
    return model.with_name(model.stem + "-eval")
