import importlib.util
import json
import subprocess
import sys
import types

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from ganforge.errors import UserError
from ganforge.export.api import ExportConfig, export
from ganforge.export.metadata import write_checksum, write_sidecar
from ganforge.export.triton import TritonConfig, write_repository
from ganforge.serve.latents import latents_for_seeds


def _config(path) -> model_config_pb2.ModelConfig:
    """Triton's own schema: text that does not parse fails the test."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_run_folder_to_a_triton_repository_that_parses(trained_run, tmp_path, ganforge_cli):
    repo = tmp_path / "repo"
    result = subprocess.run([ganforge_cli, "export", str(trained_run), "--format", "triton", "--out", str(repo),
                             "--max-batch", "32", "--instances", "2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "tritonserver --model-repository" in result.stdout

    generator = _config(repo / "generator" / "config.pbtxt")
    assert generator.platform == "onnxruntime_onnx" and generator.max_batch_size == 32
    assert [(t.name, t.data_type, list(t.dims)) for t in generator.input] == \
        [("z", model_config_pb2.TYPE_FP32, [8])]
    assert [(t.name, list(t.dims)) for t in generator.output] == [("images", [1, 16, 16])]
    assert list(generator.dynamic_batching.preferred_batch_size) == [8, 16, 32]
    assert generator.dynamic_batching.max_queue_delay_microseconds == 2000
    assert [(g.count, g.kind) for g in generator.instance_group] == [(2, model_config_pb2.ModelInstanceGroup.KIND_CPU)]
    assert (repo / "generator" / "1" / "model.onnx").is_file()

    seeds = _config(repo / "seed_to_latent" / "config.pbtxt")
    assert seeds.backend == "python" and seeds.parameters["z_dim"].string_value == "8"
    ensemble = _config(repo / "ganforge" / "config.pbtxt")
    assert ensemble.platform == "ensemble" and ensemble.input[0].data_type == model_config_pb2.TYPE_INT64
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["seed_to_latent", "generator"]
    assert dict(steps[0].output_map) == {"z": "z"} and dict(steps[1].input_map) == {"z": "z"}


def _stub_backend_utils():
    """What Triton's Python backend hands model.py, reduced to the calls it makes."""
    utils = types.ModuleType("triton_python_backend_utils")

    class Tensor:
        def __init__(self, name, array):
            self.name, self.array = name, array

        def as_numpy(self):
            return self.array

    class InferenceResponse:
        def __init__(self, output_tensors, error=None):
            self.output_tensors, self.error = output_tensors, error

    utils.Tensor, utils.InferenceResponse, utils.TritonError = Tensor, InferenceResponse, str
    utils.get_input_tensor_by_name = lambda request, name: request[name]
    return utils


def test_the_seed_model_keeps_ganforges_seed_contract(onnx_model, tmp_path, monkeypatch):
    repo = write_repository(TritonConfig(model=onnx_model, out=str(tmp_path / "repo")))
    utils = _stub_backend_utils()
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", utils)
    spec = importlib.util.spec_from_file_location("seed_model", repo / "seed_to_latent" / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    config = text_format.Parse((repo / "seed_to_latent" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    from google.protobuf.json_format import MessageToDict

    model.initialize({"model_config": json.dumps(MessageToDict(config, preserving_proto_field_name=True))})
    seeds = np.array([[0], [7], [123456789012]], dtype=np.int64)  # [batch, 1], as Triton batches dims [1]
    request = {"seed": utils.Tensor("seed", seeds)}
    (response, bad) = model.execute([request, {"seed": utils.Tensor("seed", np.array([[-1]]))}])
    z = response.output_tensors[0].as_numpy()
    assert z.dtype == np.float32 and np.array_equal(z, latents_for_seeds([0, 7, 123456789012], 8))
    assert bad.error and not bad.output_tensors


def test_models_triton_cannot_take_are_refused(runs, tmp_path, ganforge_cli):
    points = export(ExportConfig(source=str(runs["ring"]), out=str(tmp_path / "ring.onnx"))).path
    with pytest.raises(UserError, match="2D \\(points\\) generator"):
        write_repository(TritonConfig(model=str(points), out=str(tmp_path / "r1")))
    engine = tmp_path / "g.engine"  # an engine's metadata is its sidecar; its bytes are not read here
    engine.write_bytes(b"plan")
    write_sidecar(engine, {"producer": "ganforge export", "z_dim": "16", "output_shape": "[1, 16, 16]",
                           "kind": "images", "precision": "fp16", "max_batch": "64"})
    write_checksum(engine)
    with pytest.raises(UserError, match="NVIDIA GPUs only: use --instance-kind gpu"):
        write_repository(TritonConfig(model=str(engine), out=str(tmp_path / "r2")))
    repo = write_repository(TritonConfig(model=str(engine), out=str(tmp_path / "r3"), kind="gpu"))
    generator = _config(repo / "generator" / "config.pbtxt")
    assert generator.platform == "tensorrt_plan" and (repo / "generator" / "1" / "model.plan").is_file()
    assert generator.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    with pytest.raises(UserError, match="exceeds the 64"):
        write_repository(TritonConfig(model=str(engine), out=str(tmp_path / "r4"), kind="gpu", max_batch=128))
    result = subprocess.run([ganforge_cli, "export", str(points), "--format", "triton", "--out", str(tmp_path / "r5")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r5").exists()
