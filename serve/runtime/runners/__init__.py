"""Inference backends behind one Runner protocol. See base.py."""

from .base import (
    Backend,
    Runner,
    RunnerInfo,
    backends,
    copies,
    copies_share_cores,
    get_backend,
    on_own_stream,
    open_runner,
)

__all__ = ["Backend", "Runner", "RunnerInfo", "backends", "copies", "copies_share_cores", "get_backend",
           "on_own_stream", "open_runner"]
