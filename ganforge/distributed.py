"""Data-parallel training under torchrun.

Like StyleGAN2-ADA, ganforge averages gradients with an explicit all-reduce instead of wrapping the models
in DistributedDataParallel: a GAN step calls D on real, fake and (for penalties) interpolated batches and
switches D's gradients off for G's step, which DDP's bucketed hooks do not allow cleanly. Every rank starts
from the same weights (same seed), applies the same averaged gradients, and so stays in lockstep.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed() -> DistContext:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on GPU); else a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return DistContext(rank, world_size, local_rank)


def shutdown_distributed(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean_(tensors: list[torch.Tensor]) -> None:
    """Average tensors across ranks in place, with one collective over a flat buffer."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1).float() for t in tensors])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def broadcast_(tensors: list[torch.Tensor], source: int = 0) -> None:
    """Overwrite ``tensors`` on every rank with rank ``source``'s values, in place."""
    for tensor in tensors:
        dist.broadcast(tensor, source)


def rank_slice(batch_size: int, context: DistContext) -> slice:
    """This rank's share of a global batch (the global batch is drawn identically on every rank)."""
    per_rank = batch_size // context.world_size
    return slice(context.rank * per_rank, (context.rank + 1) * per_rank)
