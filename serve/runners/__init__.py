"""Inference backends behind one Runner protocol. See base.py."""

from .base import Backend, Runner, RunnerInfo, backends, get_backend, open_runner

__all__ = ["Backend", "Runner", "RunnerInfo", "backends", "get_backend", "open_runner"]
