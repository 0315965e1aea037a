"""The exported Triton repository on a real Triton Inference Server (the nvidia-pytriton wheel's tritonserver, CPU
only, Python backend): seeds in over HTTP and gRPC give the very bytes `ganforge sample` writes, requests are
batched dynamically, and what is wrong says so in the server's log."""

import concurrent.futures
import subprocess

import numpy as np
import pytest

from ganforge.export.triton import TritonConfig, write_repository
from ganforge.export.triton_server import TritonServer, server_files
from ganforge.local_server import free_ports

try:
    server_files()
    NO_SERVER = None
except RuntimeError as error:
    NO_SERVER = str(error)

http = pytest.importorskip("tritonclient.http")
grpc = pytest.importorskip("tritonclient.grpc")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(NO_SERVER is not None, reason=NO_SERVER or "")]

SEEDS = [0, 1, 7, 123456789012]


@pytest.fixture(scope="module")
def conditional_onnx(conditional_run, tmp_path_factory) -> str:
    from ganforge.export.api import ExportConfig, export

    out = tmp_path_factory.mktemp("conditional-onnx") / "g.onnx"
    return str(export(ExportConfig(source=str(conditional_run), out=str(out), max_batch=256)).path)


@pytest.fixture(scope="module")
def server(conditional_onnx, tmp_path_factory):
    """The repository of a class-conditional generator with ganforge's own runner (onnxruntime fp32, uint8 output)
    behind the seed ensemble. Each test closes its client: the server's exit waits up to 30 s for open connections."""
    repo = write_repository(TritonConfig(model=conditional_onnx, out=str(tmp_path_factory.mktemp("triton") / "repo"),
                                         generator="python", runner="onnxruntime:fp32", max_batch=32,
                                         max_queue_delay_us=20000))
    with TritonServer(repo) as running:
        yield running


def _sampled(model, out, **controls) -> np.ndarray:
    """What `ganforge sample` writes for SEEDS with the same backend and precision."""
    from ganforge.serve.sampling.sampler import SampleConfig, sample

    folder = sample(SampleConfig(model=model, out=str(out), seeds=tuple(SEEDS), backend="onnxruntime",
                                 precision="fp32", quiet=True, **controls))
    with np.load(folder.parent / "shard-00000.npz") as shard:  # sample returns the manifest
        assert shard["seeds"].tolist() == SEEDS
        return shard["images"]


@pytest.fixture(scope="module")
def sampled(conditional_onnx, tmp_path_factory) -> np.ndarray:
    return _sampled(conditional_onnx, tmp_path_factory.mktemp("sampled"))


def _seed_request(client_module, seeds):
    request = client_module.InferInput("seed", [len(seeds), 1], "INT64")
    request.set_data_from_numpy(np.array(seeds, dtype=np.int64).reshape(-1, 1))
    return [request]


def test_seeds_over_http_give_the_bytes_ganforge_sample_writes(server, sampled):
    with http.InferenceServerClient(server.http_address) as client:
        assert client.is_model_ready("ganforge") and client.is_model_ready("generator")
        result = client.infer("ganforge", _seed_request(http, SEEDS))
        images = result.as_numpy("images_uint8")
        assert images.dtype == np.uint8 and images.shape == sampled.shape
        assert np.array_equal(images, sampled), server.log()


def test_seeds_over_grpc_give_the_same_bytes(server, sampled):
    with grpc.InferenceServerClient(server.grpc_address) as client:
        split = [client.infer("ganforge", _seed_request(grpc, [seed])).as_numpy("images_uint8")[0] for seed in SEEDS]
        assert np.array_equal(np.stack(split), sampled)


def test_truncation_and_class_inputs_give_the_bytes_of_sample_with_them(server, conditional_onnx, tmp_path):
    expected = _sampled(conditional_onnx, tmp_path / "s", truncation=0.7, classes=(3,))
    inputs = _seed_request(http, SEEDS)
    for name, kind, values in (("truncation", "FP32", np.full((len(SEEDS), 1), 0.7, np.float32)),
                               ("class", "INT64", np.full((len(SEEDS), 1), 3, np.int64))):
        inputs.append(http.InferInput(name, list(values.shape), kind))
        inputs[-1].set_data_from_numpy(values)
    with http.InferenceServerClient(server.http_address) as client:
        assert np.array_equal(client.infer("ganforge", inputs).as_numpy("images_uint8"), expected), server.log()
        inputs[-1].set_data_from_numpy(np.full((len(SEEDS), 1), 10, np.int64))
        with pytest.raises(Exception, match="out of range: this model has classes 0..9"):
            client.infer("ganforge", inputs)


def test_concurrent_requests_are_batched_dynamically(server):
    with http.InferenceServerClient(server.http_address, concurrency=16) as client:
        before = client.get_inference_statistics("generator")["model_stats"][0]
        pending = [client.async_infer("ganforge", _seed_request(http, [seed])) for seed in range(48)]
        with concurrent.futures.ThreadPoolExecutor(1):
            images = [p.get_result().as_numpy("images_uint8") for p in pending]
        assert all(image.shape[0] == 1 for image in images)
        after = client.get_inference_statistics("generator")["model_stats"][0]
        inferences = after["inference_count"] - before["inference_count"]
        executions = after["execution_count"] - before["execution_count"]
        assert inferences == 48 and executions < inferences  # several requests ran as one batch


def test_a_negative_seed_is_refused_with_its_reason(server):
    with http.InferenceServerClient(server.http_address) as client:
        with pytest.raises(Exception, match="seeds must be non-negative"):
            client.infer("ganforge", _seed_request(http, [-3]))


def test_a_python_path_without_ganforge_fails_with_one_clear_line(onnx_model, tmp_path, ganforge_cli):
    repo = write_repository(TritonConfig(model=onnx_model, out=str(tmp_path / "repo"), generator="python",
                                         runner="onnxruntime", seeds=False, python_path=str(tmp_path)))
    ports = [str(p) for p in free_ports(3)]
    result = subprocess.run([ganforge_cli, "triton-server", str(repo), "--http-port", ports[0], "--grpc-port",
                             ports[1], "--metrics-port", ports[2], "--log", str(tmp_path / "log"), "--timeout", "90"],
                            capture_output=True, text=True, timeout=150)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "the generator needs ganforge in Python" in result.stderr and "python_path" in result.stderr


def test_triton_server_refuses_a_folder_that_is_no_repository(tmp_path, ganforge_cli):
    result = subprocess.run([ganforge_cli, "triton-server", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and "is not a repository from `ganforge export --format triton`" in result.stderr


def test_triton_server_refuses_a_repository_for_backends_it_lacks(onnx_model, tmp_path, ganforge_cli):
    repo = write_repository(TritonConfig(model=onnx_model, out=str(tmp_path / "repo")))  # onnxruntime: NGC only
    result = subprocess.run([ganforge_cli, "triton-server", str(repo)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "model generator needs Triton's onnxruntime backend" in result.stderr
    assert "--triton-backend python" in result.stderr
