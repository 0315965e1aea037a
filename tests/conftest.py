"""Shared fixtures: tiny configurations that train in well under a second per step on 2 CPU cores."""

from __future__ import annotations

import collections
import dataclasses
import os
import sys
from pathlib import Path

import pytest

from ganforge.train.config import TrainConfig


def tiny_config(tmp_path, **changes) -> TrainConfig:
    """A dcgan on 16 px digits with 8 base channels: ~10 ms a step."""
    values = dict(data="digits", model="dcgan", resolution=16, width=8, z_dim=8, batch_size=16, steps=4,
                  checkpoint_every=2, sample_every=2, eval_every=0, log_every=1, quiet=True, precision="fp32",
                  device="cpu", out=str(tmp_path / "run"))
    values.update(changes)
    return TrainConfig(**values).resolved()


def pytest_configure(config) -> None:
    """Under `pytest -n N` (pytest-xdist, as `make test` runs) the N workers share the cores: each computes on its
    share, so that N torch thread pools do not fight over them (subprocesses the tests start inherit the share)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if os.environ.get("PYTEST_XDIST_WORKER") and workers > 1:
        import torch

        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items) -> None:
    """Under `pytest -n N` the files with the most slow tests go first (`make test` hands out whole files in this
    order): the longest start at once and the short ones fill the workers' ends, so that the workers finish together."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        slow = collections.Counter(item.path for item in items if item.get_closest_marker("slow"))
        items.sort(key=lambda item: -slow[item.path])  # stable: a file's tests keep their order


@pytest.fixture(scope="session", autouse=True)
def dataset_cache(tmp_path_factory) -> Path:
    """Folders' dataset caches go to a temporary folder (subprocesses inherit it), never to ~/.cache."""
    folder = tmp_path_factory.mktemp("dataset-cache")
    os.environ["GANFORGE_CACHE"] = str(folder)
    return folder


@pytest.fixture
def tiny(tmp_path):
    return lambda **changes: tiny_config(tmp_path, **changes)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A small trained dcgan run folder (16 px digits), shared by export/serve tests."""
    from ganforge.train.loop import train

    root = tmp_path_factory.mktemp("trained")
    config = dataclasses.replace(tiny_config(root, steps=6, checkpoint_every=6, sample_every=6))
    return train(config)


@pytest.fixture(scope="session")
def conditional_run(tmp_path_factory):
    """A class-conditional run folder (16 px digits, 10 classes read from z0), for the class and truncation tests."""
    from ganforge.train.loop import train

    root = tmp_path_factory.mktemp("conditional")
    return train(tiny_config(root, conditional=True, steps=2, checkpoint_every=2, sample_every=2))


@pytest.fixture(scope="session")
def residual_run(tmp_path_factory):
    """A class-conditional run of the residual model (16 px digits, rpgan with R1 and R2)."""
    from ganforge.train.loop import train

    root = tmp_path_factory.mktemp("residual")
    return train(tiny_config(root, model="residual", conditional=True, loss="rpgan", r1=0.1, r2=0.1, steps=2,
                             checkpoint_every=2, sample_every=2))


@pytest.fixture(scope="session")
def ganforge_cli() -> str:
    """The installed `ganforge` console script: CLI tests run it as a user does."""
    return str(Path(sys.executable).parent / "ganforge")


@pytest.fixture(scope="session")
def onnx_model(trained_run, tmp_path_factory):
    """trained_run exported to ONNX (fp32, max batch 256), shared by export/serve tests."""
    from ganforge.export.api import ExportConfig, export

    out = tmp_path_factory.mktemp("models") / "g.onnx"
    return str(export(ExportConfig(source=str(trained_run), out=str(out), max_batch=256)).path)


@pytest.fixture
def onnx_copy(onnx_model, tmp_path) -> Path:
    """A private copy of onnx_model (with its checksum, without any auto.json cache), for tests that write beside
    the model: each starts clean and leaves the shared file alone."""
    import shutil

    for file in Path(onnx_model).parent.glob(Path(onnx_model).name + "*"):
        if not file.name.endswith(".auto.json"):
            shutil.copy(file, tmp_path / file.name)
    return tmp_path / Path(onnx_model).name
