"""Small pieces shared by the models."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def maybe_spectral_norm(layer: nn.Module, enabled: bool) -> nn.Module:
    return spectral_norm(layer) if enabled else layer


def dcgan_init(module: nn.Module) -> None:
    """The DCGAN paper's initialisation: N(0, 0.02) weights, BatchNorm scales N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def blocks_of(layers: nn.Sequential) -> list[nn.Module]:
    """A plain stack's blocks from its input side: each weighted layer with the weightless ones after it (a conv
    with its BatchNorm and activation), for ``--freeze-d``."""
    blocks: list[list[nn.Module]] = []
    for layer in layers:
        if isinstance(layer, (nn.Conv2d, nn.Linear)) or not blocks:
            blocks.append([layer])
        else:
            blocks[-1].append(layer)
    return [nn.ModuleList(block) for block in blocks]
