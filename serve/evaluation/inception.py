"""The standard FID/KID features: Inception-v3 as the TorchScript file that StyleGAN3 and clean-fid use
(``inception-2015-12-05.pt``), given by the user as a path (ganforge never downloads it), computed with
torchmetrics (a well-kept library) instead of ganforge's own functions.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from ganforge.errors import UserError
from ganforge.train.metrics.features import Extractor


class InceptionFeatures(nn.Module):
    """images [N, C, H, W] in [-1, 1] -> the 2048 pool features (grey images are repeated to 3 channels)."""

    num_features = 2048

    def __init__(self, detector: nn.Module):
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = images.float()
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        pixels = ((images + 1) * 127.5).clamp(0, 255)  # the detector takes [0, 255] and resizes to 299 itself
        return self.detector(pixels, return_features=True)


def inception_extractor(weights: Path) -> Extractor:
    try:
        detector = torch.jit.load(str(weights), map_location="cpu").eval()
    except Exception as error:  # noqa: BLE001 - any load failure is the user's file
        raise UserError(f"--weights {weights}: not a TorchScript Inception-v3 file ({type(error).__name__})") from error
    return Extractor("inception", InceptionFeatures(detector), None, False, {"weights": str(weights)})


class UInt8Input(nn.Module):
    """torchmetrics feeds uint8 images; ganforge's extractors take [-1, 1]."""

    def __init__(self, body: nn.Module, num_features: int):
        super().__init__()
        self.body, self.num_features = body.eval(), num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images.float() / 127.5 - 1.0).double()


def torchmetrics_fid_kid(extractor: Extractor, real: torch.Tensor, fake: torch.Tensor,
                         subset_size: int = 1000) -> dict[str, float]:
    """FID and KID computed by torchmetrics with ``extractor``'s features on uint8 images [N, C, H, W]."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError as error:
        raise UserError("the inception features need torchmetrics: pip install torchmetrics") from error
    with torch.no_grad():
        dim = extractor.body(torch.zeros(1, *real.shape[1:])).shape[-1]
    features = UInt8Input(extractor.body, dim)
    fid = FrechetInceptionDistance(feature=features, input_img_size=tuple(real.shape[1:]))
    with warnings.catch_warnings():  # torchmetrics warns that KID keeps every feature: that is how KID is computed
        warnings.filterwarnings("ignore", message="Metric `Kernel Inception Distance` will save all extracted")
        kid = KernelInceptionDistance(feature=features, subset_size=min(subset_size, len(real), len(fake)))
    with torch.no_grad():
        for metric in (fid, kid):
            for images, is_real in ((real, True), (fake, False)):
                for chunk in images.split(500):
                    metric.update(chunk, real=is_real)
    return {"fd": float(fid.compute()), "kid": float(kid.compute()[0])}
