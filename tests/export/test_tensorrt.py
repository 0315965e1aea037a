"""TensorRT: everything around the library is tested here; building and running need TensorRT + a GPU."""

import importlib.util
import json
import subprocess

import onnx
import pytest

from ganforge.errors import UserError
from ganforge.export.tensorrt import BatchProfile, EngineInfo, check_compatible, precision_plan

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _info(**changes):
    values = dict(tensorrt_version="10.13.0", gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
                  precision="fp16", min_batch=1, opt_batch=64, max_batch=256, z_dim=100, output_shape=[3, 64, 64],
                  onnx_sha256="ab" * 32, build_seconds=12.5, ganforge_metadata={"z_dim": "100"})
    values.update(changes)
    return EngineInfo(**values)


@pytest.mark.parametrize("min_batch, opt, max_batch", [(0, 1, 2), (4, 2, 8), (1, 64, 32)])
def test_profile_rejects_impossible_shapes(min_batch, opt, max_batch):
    with pytest.raises(UserError, match="min <= opt <= max"):
        BatchProfile(min_batch, opt, max_batch)


def test_profile_shapes_and_onnx_limit():
    assert BatchProfile(1, 8, 32).shapes(100) == ((1, 100), (8, 100), (32, 100))
    with pytest.raises(UserError, match="exceeds the ONNX model's max batch 16"):
        BatchProfile(1, 8, 32).check_against(16)


def test_precision_choice_follows_the_tensorrt_version():
    assert precision_plan("10.13.0", fp16=True) == "fp16-flag"
    assert precision_plan("11.0.1", fp16=True) == "fp16-onnx"  # 11 has no BuilderFlag.FP16
    assert precision_plan("11.0.1", fp16=False) == precision_plan("10.0", fp16=False) == "fp32"
    # a conditional generator's class cut must stay fp32: a strongly typed build from the fp16 ONNX on 10 too
    assert precision_plan("10.13.0", fp16=True, conditional=True) == "fp16-onnx"
    with pytest.raises(UserError, match="too old"):
        precision_plan("8.6.1", fp16=True)


def test_sidecar_round_trip_and_mismatch_messages(tmp_path):
    engine = tmp_path / "g.engine"
    _info().save(engine)
    info = EngineInfo.load(engine)
    assert info == _info()
    check_compatible(info, "10.13.0", "NVIDIA H100 80GB HBM3", "9.0", engine)
    with pytest.raises(UserError, match="built with TensorRT 10.13.0.*rebuild"):
        check_compatible(info, "11.0.1", "NVIDIA H100 80GB HBM3", "9.0", engine)
    with pytest.raises(UserError, match="built for NVIDIA H100.*this GPU is NVIDIA A100.*rebuild"):
        check_compatible(info, "10.13.0", "NVIDIA A100-SXM4-80GB", "8.0", engine)
    with pytest.raises(UserError, match="no sidecar"):
        EngineInfo.load(tmp_path / "other.engine")


def test_fp16_onnx_step_for_tensorrt_11(trained_run, tmp_path):
    from ganforge.export.api import ExportConfig, export
    from ganforge.export.onnx import convert_fp16

    fp32 = export(ExportConfig(source=str(trained_run), out=str(tmp_path / "g.onnx"), max_batch=8)).path
    convert_fp16(fp32, tmp_path / "g16.onnx")
    model = onnx.load(str(tmp_path / "g16.onnx"))
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_build_engine_without_tensorrt_says_how_to_install(trained_run, tmp_path, ganforge_cli):
    from ganforge.export.api import ExportConfig, export

    onnx_path = export(ExportConfig(source=str(trained_run), out=str(tmp_path / "g.onnx"), max_batch=8)).path
    result = subprocess.run([ganforge_cli, "build-engine", str(onnx_path), "--out", str(tmp_path / "g.engine"),
                             "--max-batch", "8", "--opt-batch", "4"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "pip install ganforge[tensorrt]" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "g.engine").exists()


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TENSORRT, reason="needs TensorRT and an NVIDIA GPU (cannot be installed here)")
def test_engine_matches_onnxruntime(trained_run, tmp_path):
    import numpy as np
    import torch

    from ganforge.export.api import ExportConfig, export
    from ganforge.export.onnx import onnx_session
    from ganforge.export.tensorrt import build_engine
    from ganforge.serve.runtime.runners.tensorrt_runner import TensorRTEngine

    onnx_path = export(ExportConfig(source=str(trained_run), out=str(tmp_path / "g.onnx"), max_batch=16)).path
    build_engine(onnx_path, tmp_path / "g.engine", BatchProfile(1, 8, 16))
    assert json.loads((tmp_path / "g.engine.json").read_text())["max_batch"] == 16
    engine = TensorRTEngine(tmp_path / "g.engine")
    z = np.random.default_rng(0).standard_normal((5, 8), dtype=np.float32)
    expected = onnx_session(onnx_path).run(None, {"z": z})[0]
    np.testing.assert_allclose(engine.infer(torch.from_numpy(z)).cpu().numpy(), expected, atol=1e-3)


class _FakeTensorRT:
    """The TensorRT builder calls _build_plan makes, recording the builder flags (no GPU, no TensorRT)."""

    class BuilderFlag:
        FP16, TF32 = "FP16", "TF32"

    class NetworkDefinitionCreationFlag:
        STRONGLY_TYPED = 5

    class MemoryPoolType:
        WORKSPACE = "workspace"

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    def __init__(self):
        fake = self
        self.flags = {"TF32"}  # TensorRT turns TF32 on by default

        class Config:
            def set_memory_pool_limit(self, pool, size): ...
            def set_flag(self, flag): fake.flags.add(flag)
            def clear_flag(self, flag): fake.flags.discard(flag)
            def add_optimization_profile(self, profile): ...

        class Profile:
            def set_shape(self, name, *shapes): ...

        class Builder:
            def __init__(self, logger): ...
            def create_network(self, flags): return object()
            def create_builder_config(self): return Config()
            def create_optimization_profile(self): return Profile()
            def build_serialized_network(self, network, config): return b"plan"

        class OnnxParser:
            def __init__(self, network, logger): ...
            def parse(self, data): return True

        self.Builder, self.OnnxParser = Builder, OnnxParser


@pytest.mark.parametrize("plan_kind, flags", [("fp32", set()), ("fp16-flag", {"FP16"})])
def test_fp32_layers_are_built_without_tf32(tmp_path, plan_kind, flags):
    from ganforge.export.tensorrt import _build_plan

    trt = _FakeTensorRT()
    (tmp_path / "g.onnx").write_bytes(b"onnx")
    assert _build_plan(trt, tmp_path / "g.onnx", 8, BatchProfile(1, 8, 16), plan_kind, 64, None) == b"plan"
    assert trt.flags == flags  # TF32 cleared: an "fp32" engine computes fp32, as every other fp32 backend does


def test_conditional_generators_are_recognised_for_the_fp16_plan(runs, tmp_path):
    from ganforge.export.api import ExportConfig, export
    from ganforge.export.metadata import read_metadata
    from ganforge.export.tensorrt import is_conditional

    plain = export(ExportConfig(source=str(runs["dcgan16"]), out=str(tmp_path / "g.onnx"), max_batch=8)).path
    conditional = export(ExportConfig(source=str(runs["conditional16"]), out=str(tmp_path / "c.onnx"),
                                      max_batch=8)).path
    assert not is_conditional(read_metadata(plain)) and is_conditional(read_metadata(conditional))
