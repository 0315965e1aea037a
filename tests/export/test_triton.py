import subprocess

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from ganforge.errors import UserError
from ganforge.export.api import ExportConfig, export
from ganforge.export.metadata import write_checksum, write_sidecar
from ganforge.export.triton import TritonConfig, write_repository


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
    assert seeds.parameters["role"].string_value == "seed_to_latent"
    assert (repo / "seed_to_latent" / "1" / "model.py").is_file()
    ensemble = _config(repo / "ganforge" / "config.pbtxt")
    assert ensemble.platform == "ensemble" and ensemble.input[0].data_type == model_config_pb2.TYPE_INT64
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["seed_to_latent", "generator"]
    assert dict(steps[0].output_map) == {"z": "z"} and dict(steps[1].input_map) == {"z": "z"}


def test_python_and_openvino_generators_parse_with_their_settings(onnx_model, tmp_path):
    repo = write_repository(TritonConfig(model=onnx_model, out=str(tmp_path / "py"), generator="python",
                                         runner="openvino:int8", python_path="/opt/env/site-packages"))
    generator = _config(repo / "generator" / "config.pbtxt")
    assert generator.backend == "python" and (repo / "generator" / "1" / "model.py").is_file()
    parameters = {key: value.string_value for key, value in generator.parameters.items()}
    assert parameters == {"role": "generator", "model_file": "model.onnx", "backend": "openvino",
                          "precision": "int8", "output": "uint8", "python_path": "/opt/env/site-packages"}
    assert [(t.name, t.data_type, list(t.dims)) for t in generator.output] == \
        [("images_uint8", model_config_pb2.TYPE_UINT8, [16, 16, 1])]  # NHWC bytes, as `ganforge sample` writes
    ensemble = _config(repo / "ganforge" / "config.pbtxt")
    assert ensemble.output[0].name == "images_uint8" and dict(ensemble.ensemble_scheduling.step[1].output_map) == \
        {"images_uint8": "images_uint8"}

    repo = write_repository(TritonConfig(model=onnx_model, out=str(tmp_path / "py"), generator="openvino"))
    generator = _config(repo / "generator" / "config.pbtxt")  # rewritten in place: no python model left behind
    assert generator.backend == "openvino" and generator.default_model_filename == "model.onnx"
    assert generator.output[0].name == "images" and not (repo / "generator" / "1" / "model.py").exists()


@pytest.mark.parametrize("changes, message", [
    ({"generator": "tensorflow"}, "--triton-backend must be one of"),
    ({"generator": "python", "runner": "torch"}, "--runner must be auto or BACKEND"),
    ({"generator": "python", "runner": "openvino:fp8"}, "--runner must be auto or BACKEND"),
    ({"generator": "python", "runner": "auto:int8"}, "--runner must be auto or BACKEND"),
    ({"runner": "openvino:int8"}, "apply to --triton-backend python only"),
    ({"output": "float"}, "apply to --triton-backend python only"),
    ({"generator": "python", "output": "png"}, "--output-type must be uint8 or float"),
])
def test_triton_settings_that_cannot_work_are_refused(changes, message, tmp_path):
    with pytest.raises(UserError, match=message):
        TritonConfig(model="g.onnx", out=str(tmp_path / "repo"), **changes)


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
