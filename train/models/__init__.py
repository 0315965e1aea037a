"""Build models from plain-dict configs (the form stored in checkpoints, so G can be rebuilt from the file)."""

from __future__ import annotations

import torch
from torch import nn

from ganforge.errors import UserError

from .dcgan import DCGANDiscriminator, DCGANGenerator
from .mlp import MLPDiscriminator, MLPGenerator
from .residual import ResidualDiscriminator, ResidualGenerator

IMAGE_MODELS = ("dcgan", "residual")


def generator_config(model: str, z_dim: int, sample_shape: tuple[int, ...], width: int, depth: int,
                     images: bool, class_prior: list[float] | None = None, class_groups: int = 1,
                     pseudo_classes: bool = False, full_size_blocks: int | None = None,
                     batch_norm: bool = False) -> dict:
    """``depth``: the MLP's hidden layers, the residual model's blocks per stage (the DCGAN has none to set);
    ``full_size_blocks``: the residual model's blocks at full size, where not ``depth``; ``batch_norm``: the residual
    G normalises its blocks' activations over the batch (the DCGAN's G always does)."""
    if model in IMAGE_MODELS:
        channels, resolution, _ = sample_shape
        config = {"kind": model, "z_dim": z_dim, "channels": channels, "resolution": resolution, "width": width}
        if model == "residual":
            config["blocks"] = depth
            if full_size_blocks is not None:  # left out by default: the configs of earlier runs stay valid
                config["full_size_blocks"] = full_size_blocks
            if batch_norm:
                config["batch_norm"] = True
        if class_prior:
            config["class_prior"] = class_prior
        if class_prior and class_groups > 1:  # left out at 1: the configs of earlier conditional runs stay valid
            config["class_groups"] = class_groups
        if class_prior and pseudo_classes:  # the classes are clusters found in unlabelled data (a record only)
            config["class_source"] = "clusters"
        return config
    return {"kind": "mlp", "z_dim": z_dim, "out_shape": list(sample_shape), "width": width, "depth": depth,
            "tanh": images}


def build_generator(config: dict) -> nn.Module:
    try:
        kind = config["kind"]
        if kind == "dcgan":
            return DCGANGenerator(config["z_dim"], config["channels"], config["resolution"], config["width"],
                                  config.get("class_prior"), config.get("class_groups", 1))
        if kind == "residual":
            return ResidualGenerator(config["z_dim"], config["channels"], config["resolution"], config["width"],
                                     config["blocks"], config.get("class_prior"), config.get("class_groups", 1),
                                     config.get("full_size_blocks"), config.get("batch_norm", False))
        if kind == "mlp":
            return MLPGenerator(config["z_dim"], tuple(config["out_shape"]), config["width"], config["depth"],
                                config["tanh"])
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"generator config is incomplete or invalid: {error!r}") from error
    raise UserError(f"unknown generator kind {config.get('kind')!r}")


def output_shape(config: dict) -> tuple[int, ...]:
    """Per-sample output shape: (C, H, W) for image generators, (2,) for 2D ones."""
    if config["kind"] in IMAGE_MODELS:
        return (config["channels"], config["resolution"], config["resolution"])
    return tuple(config["out_shape"])


def makes_images(config: dict) -> bool:
    """Whether the generator's outputs are images in [-1, 1] (else unbounded 2D points)."""
    return config["kind"] in IMAGE_MODELS or config.get("tanh", False)


def build_discriminator(model: str, sample_shape: tuple[int, ...], width: int, depth: int, pack: int,
                        batch_norm: bool, spectral_norm: bool, num_classes: int = 0,
                        class_groups: int = 1, full_size_blocks: int | None = None) -> nn.Module:
    if model == "dcgan":
        channels, resolution, _ = sample_shape
        return DCGANDiscriminator(channels, resolution, width, pack, batch_norm, spectral_norm, num_classes,
                                  class_groups)
    if model == "residual":
        channels, resolution, _ = sample_shape
        return ResidualDiscriminator(channels, resolution, width, depth, pack, num_classes, class_groups,
                                     full_size_blocks, batch_norm)
    return MLPDiscriminator(sample_shape, pack, width, depth, spectral_norm)


def pack_samples(x: torch.Tensor, pack: int) -> torch.Tensor:
    """PacGAN packing: [B, C, H, W] -> [B/pack, pack*C, H, W] (and [B, d] -> [B/pack, pack*d])."""
    if pack == 1:
        return x
    return x.reshape(x.shape[0] // pack, pack * x.shape[1], *x.shape[2:])


__all__ = ["IMAGE_MODELS", "build_discriminator", "build_generator", "generator_config", "makes_images", "output_shape",
           "pack_samples"]
