"""The HTTP server, driven by a real KServe v2 client (tritonclient) and plain HTTP."""

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from ganforge.latents import latents_for_seeds
from ganforge.serve.http.server import ServerConfig
from ganforge.serve.runtime.runners import open_runner
from ganforge.serve.sampling.sampler import SampleConfig, sample


class SlowRunner:
    """Wraps a runner and sleeps in infer, to fill the queue on purpose."""

    def __init__(self, runner, seconds):
        self.runner, self.seconds, self.info = runner, seconds, runner.info

    def infer(self, z):
        time.sleep(self.seconds)
        return self.runner.infer(z)


def _seed_request(seeds):
    return {"inputs": [{"name": "seed", "datatype": "INT64", "shape": [len(seeds)], "data": list(seeds)}]}


def test_tritonclient_gets_the_same_images_as_ganforge_sample(server, onnx_model, tmp_path):
    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("generator")
    metadata = client.get_model_metadata("generator")
    assert metadata["outputs"][0]["shape"] == [-1, 1, 16, 16]
    assert metadata["outputs"][1] == {"name": "images_uint8", "datatype": "UINT8", "shape": [-1, 16, 16, 1]}
    seeds = np.array([5, 6, 7, 123], dtype=np.int64)
    sample(SampleConfig(model=onnx_model, backend="onnxruntime", out=str(tmp_path / "s"),
                        seeds=tuple(seeds.tolist()), quiet=True))
    with np.load(tmp_path / "s" / "shard-00000.npz") as shard:
        sampled = shard["images"]
    floats = {}
    for binary in (False, True):  # JSON tensors, then the binary tensor extension both ways
        tensor = triton.InferInput("seed", [4], "INT64")
        tensor.set_data_from_numpy(seeds, binary_data=binary)
        outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("images", "images_uint8")]
        result = client.infer("generator", [tensor], outputs=outputs)
        floats[binary] = result.as_numpy("images")
        from ganforge.images import nchw_to_nhwc, to_uint8

        assert np.array_equal(nchw_to_nhwc(to_uint8(floats[binary])), sampled)
        assert result.as_numpy("images_uint8").dtype == np.uint8
        assert np.array_equal(result.as_numpy("images_uint8"), sampled)  # the very bytes `sample` writes
    assert np.array_equal(floats[False], floats[True])  # JSON floats are exact float32 values


def test_concurrent_single_seed_requests_are_batched(server):
    def one(seed):
        return httpx.post(f"{server.url}/v2/models/generator/infer", json=_seed_request([seed]), timeout=30)

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(one, range(64)))
    assert all(r.status_code == 200 for r in responses)
    assert responses[3].json()["outputs"][0]["shape"] == [1, 1, 16, 16]
    text = httpx.get(f"{server.url}/metrics").text
    count = float(next(line.split()[-1] for line in text.splitlines() if line.startswith("ganforge_batch_size_count")))
    assert count < 64  # fewer inference calls than requests: some batches held more than one request
    assert 'ganforge_requests_total{status="200"} 64.0' in text


def test_two_batches_in_flight_answer_every_request_with_its_own_images(onnx_model, running_server):
    seeds = list(range(200, 248))
    with open_runner("onnxruntime", onnx_model) as runner:
        expected = runner.infer(latents_for_seeds(seeds, runner.info.z_dim))
        config = ServerConfig(max_batch=8, max_queue_delay_us=5000, in_flight=2)
        with running_server(runner, config) as running, ThreadPoolExecutor(16) as pool:
            def one(seed):
                body = _seed_request([seed]) | {"parameters": {"binary_data_output": True}}
                response = httpx.post(f"{running.url}/v2/models/generator/infer", json=body, timeout=30)
                assert response.status_code == 200
                size = int(response.headers["inference-header-content-length"])
                images = json.loads(response.content[:size])["outputs"][0]
                assert images["name"] == "images"
                return np.frombuffer(response.content[size : size + images["parameters"]["binary_data_size"]], "<f4")

            answers = list(pool.map(one, seeds))
        assert runner.infer(latents_for_seeds(seeds[:1], runner.info.z_dim)).shape[0] == 1  # still open: ours
    np.testing.assert_array_equal(np.stack(answers), expected.reshape(len(seeds), -1))


@pytest.mark.parametrize("body, message", [
    ({"inputs": [{"name": "noise", "datatype": "FP32", "shape": [1, 8], "data": [0] * 8}]}, "unknown input"),
    ({"inputs": [{"name": "seed", "datatype": "FP32", "shape": [1], "data": [1]}]}, "must be INT64"),
    ({"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 3], "data": [0, 0, 0]}]}, "shape [n, 8]"),
    ({"inputs": [{"name": "seed", "datatype": "INT64", "shape": [2], "data": [1]}]}, "1 values for shape"),
    (_seed_request(range(17)), "1..16 seeds"),
    ({"inputs": []}, "exactly one input"),
])
def test_malformed_requests_get_400_with_a_message(server, body, message):
    response = httpx.post(f"{server.url}/v2/models/generator/infer", json=body)
    assert response.status_code == 400 and message in response.json()["error"]


def test_unknown_model_404_and_bad_json_400(server):
    assert httpx.post(f"{server.url}/v2/models/other/infer", json=_seed_request([1])).status_code == 404
    response = httpx.post(f"{server.url}/v2/models/generator/infer", content=b"{not json")
    assert response.status_code == 400


def test_z_input_and_png_endpoint(server):
    z = np.zeros((2, 8), np.float32)
    body = {"inputs": [{"name": "z", "datatype": "FP32", "shape": [2, 8], "data": z.ravel().tolist()}]}
    assert httpx.post(f"{server.url}/v2/models/generator/infer", json=body).json()["outputs"][0]["shape"][0] == 2
    png = httpx.get(f"{server.url}/v1/sample.png", params={"seed": 3})
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_seed_requests_choose_class_and_truncation_as_sample_does(conditional_run, running_server, tmp_path):
    manifest = sample(SampleConfig(model=conditional_run, backend="torch", out=str(tmp_path / "s"), seeds=(4, 5),
                                   quiet=True, truncation=0.7, classes=(3,)))
    with np.load(tmp_path / "s" / "shard-00000.npz") as shard:
        expected = shard["images"]
    with open_runner("torch", json.loads(manifest.read_text())["model"]) as runner, \
            running_server(runner, ServerConfig(max_batch=16)) as running:
        body = {**_seed_request([4, 5]), "parameters": {"truncation": 0.7, "class": 3},
                "outputs": [{"name": "images_uint8"}]}
        answer = httpx.post(f"{running.url}/v2/models/generator/infer", json=body).json()["outputs"][0]
        assert np.array_equal(np.asarray(answer["data"], np.uint8).reshape(answer["shape"]), expected)
        wrong = httpx.post(f"{running.url}/v2/models/generator/infer",
                           json={**_seed_request([4]), "parameters": {"class": 10}})
        assert wrong.status_code == 400 and "classes 0..9" in wrong.json()["error"]
        png = httpx.get(f"{running.url}/v1/sample.png", params={"seed": 4, "class": 3, "truncation": 0.7})
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
        assert httpx.get(f"{running.url}/v1/sample.png", params={"seed": 4, "truncation": 2}).status_code == 400


def test_requests_for_floats_and_for_uint8_sharing_batches_each_get_their_own_bytes(onnx_model, running_server):
    """Batches convert to uint8 once on the worker thread while requests ask for uint8; requests of either kind,
    mixed in the same batches, get the bytes of their own seed (as `sample` and a lone conversion make them)."""
    from ganforge.images import nchw_to_nhwc, to_uint8

    with open_runner("onnxruntime", onnx_model) as runner:
        expected = runner.infer(latents_for_seeds(range(24), runner.info.z_dim))
        with running_server(SlowRunner(runner, 0.05), ServerConfig(max_batch=8, max_queue_delay_us=20_000)) as running:
            async def burst():
                async with httpx.AsyncClient(timeout=30) as client:
                    url = f"{running.url}/v2/models/generator/infer"
                    bodies = [_seed_request([seed]) | {"outputs": [{"name": ("images", "images_uint8")[seed % 2]}]}
                              for seed in range(24)]
                    return await asyncio.gather(*[client.post(url, json=body) for body in bodies])

            responses = asyncio.run(burst())
    for seed, response in enumerate(responses):
        output = response.json()["outputs"][0]
        if seed % 2:
            assert output["name"] == "images_uint8" and output["shape"] == [1, 16, 16, 1]
            assert output["data"] == nchw_to_nhwc(to_uint8(expected[seed : seed + 1])).reshape(-1).tolist()
        else:
            np.testing.assert_allclose(np.array(output["data"]).reshape(1, 1, 16, 16), expected[seed : seed + 1],
                                       atol=1e-5)


def test_overload_gets_503_while_the_server_stays_ready(onnx_model, running_server):
    with open_runner("onnxruntime", onnx_model) as runner:
        config = ServerConfig(max_batch=2, max_queue_delay_us=0, max_queue=4)
        with running_server(SlowRunner(runner, 0.2), config) as running:
            async def burst():
                async with httpx.AsyncClient(timeout=30) as client:
                    url = f"{running.url}/v2/models/generator/infer"
                    return await asyncio.gather(*[client.post(url, json=_seed_request([i])) for i in range(20)])

            responses = asyncio.run(burst())
            codes = [r.status_code for r in responses]
            assert codes.count(503) > 0 and codes.count(200) > 0
            assert next(r for r in responses if r.status_code == 503).headers["retry-after"] == "1"
            assert httpx.get(f"{running.url}/v2/health/ready").status_code == 200


def test_api_key_guards_every_route_but_the_probes(onnx_model, running_server, parser):
    with open_runner("onnxruntime", onnx_model) as runner:
        with running_server(runner, ServerConfig(api_key="s3cret"), parser) as running:
            url = f"{running.url}/v2/models/generator/infer"
            assert httpx.post(url, json=_seed_request([1])).status_code == 401
            assert httpx.post(url, json=_seed_request([1]), headers={"X-API-Key": "wrong"}).status_code == 401
            assert httpx.post(url, json=_seed_request([1]), headers={"Authorization": "s3cret"}).status_code == 401
            ok = httpx.post(url, json=_seed_request([1]), headers={"Authorization": "Bearer s3cret"})
            assert ok.status_code == 200
            assert httpx.post(url, json=_seed_request([1]), headers={"X-API-Key": "s3cret"}).status_code == 200
            for path in ("/metrics", "/v2", "/v2/models/generator", "/v1/sample.png", "/docs", "/openapi.json"):
                response = httpx.get(running.url + path)
                assert response.status_code == 401 and "API key" in response.json()["error"], path
            assert httpx.get(f"{running.url}/v2/health/live").status_code == 200  # probes stay open
            assert httpx.get(f"{running.url}/v2/health/ready").status_code == 200
            key = {"Authorization": "Bearer s3cret"}
            assert httpx.get(f"{running.url}/docs", headers=key).status_code == 404  # API docs off by default
        with running_server(runner, ServerConfig(api_key="s3cret", metrics_public=True)) as running:
            assert httpx.get(f"{running.url}/metrics").status_code == 200


class BrokenRunner:
    def __init__(self, info):
        self.info = info

    def infer(self, z):
        raise RuntimeError("the backend broke")


def test_client_mistakes_are_4xx_json_and_a_real_fault_is_one_counted_500(server, onnx_model, running_server):
    url = f"{server.url}/v2/models/generator/infer"
    bad = [b'{"inputs": [{"name": "seed", "datatype": "INT64", "shape": [1], "data": [99999999999999999999]}]}',
           b'{"inputs": [{"name": "seed", "datatype": "INT32", "shape": [1], "data": [2147483648]}]}',
           b'{"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 8], "data": [0,0,0,0,0,0,0,1e400]}]}',
           b'{"inputs": [{"name": "seed", "datatype": "INT64", "shape": [1], "data": [1]}], "parameters": 7}',
           b'{"inputs": [{"name": "seed", "datatype": "INT64", "shape": [1], "data": [1]}], "outputs": "x"}',
           b'{"inputs": [{"name": "seed", "datatype": "INT64", "shape": [1], "data": [1]}], '
           b'"outputs": [{"name": "x"}]}',
           b'[' * 30_000 + b']' * 30_000,  # nested deeper than Python's recursion limit
           b'{"inputs": [{"name": "seed", "datatype": "INT64", "shape": [1], "data": [1.5]}]}']
    with httpx.Client(timeout=30) as client:  # one keep-alive connection throughout
        for body in bad:
            response = client.post(url, content=body)
            assert response.status_code == 400 and response.json()["error"], body[:60]
        assert client.get(f"{server.url}/v1/sample.png", params={"seed": "abc"}).status_code == 400
        assert client.get(f"{server.url}/no/such/route").json()["error"]
        too_big = client.post(url, content=b" " * 10_000_000)
        assert too_big.status_code == 413 and "exceeds the limit" in too_big.json()["error"]
        assert client.post(url, json=_seed_request([1])).status_code == 200  # the connection still serves
    with open_runner("onnxruntime", onnx_model) as runner:
        with running_server(BrokenRunner(runner.info), ServerConfig(), server.parser) as running:
            response = httpx.post(f"{running.url}/v2/models/generator/infer", json=_seed_request([1]))
            assert response.status_code == 500 and response.json() == {"error": "internal server error"}
            assert 'ganforge_requests_total{status="500"} 1.0' in httpx.get(f"{running.url}/metrics").text


def test_a_queue_smaller_than_a_batch_is_refused():
    from ganforge.errors import UserError

    with pytest.raises(UserError, match="--max-queue 4 must be at least --max-batch 8"):
        ServerConfig(max_batch=8, max_queue=4)


def test_binary_body_that_does_not_match_its_header_gets_400(server):
    header = json.dumps({"inputs": [{"name": "seed", "datatype": "INT64", "shape": [2],
                                     "parameters": {"binary_data_size": 16}}]}).encode()
    url = f"{server.url}/v2/models/generator/infer"
    short = httpx.post(url, content=header + b"\x00" * 8, headers={"Inference-Header-Content-Length": str(len(header))})
    assert short.status_code == 400 and "declares 16 binary bytes" in short.json()["error"]
    wrong = httpx.post(url, content=header, headers={"Inference-Header-Content-Length": "99999"})
    assert wrong.status_code == 400 and "does not fit" in wrong.json()["error"]
    seeds = np.array([4, 9], dtype="<i8").tobytes()
    ok = httpx.post(url, content=header + seeds, headers={"Inference-Header-Content-Length": str(len(header))})
    assert ok.status_code == 200 and ok.json()["outputs"][0]["shape"] == [2, 1, 16, 16]


def test_serve_cli_port_mistakes_are_one_line(onnx_model, ganforge_cli):
    import socket
    import subprocess

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for flag, message in ((["--port", "99999"], "--port must be in 0..65535"),
                              (["--in-flight", "0"], "--in-flight must be at least 1"),
                              (["--port", str(port)], "Address already in use")):
            result = subprocess.run([ganforge_cli, "serve", onnx_model, *flag], capture_output=True, text=True,
                                    timeout=60)
            assert result.returncode == 2 and result.stdout == ""
            assert result.stderr.startswith("ganforge serve: error: ") and message in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_idle_slow_and_oversized_heads_are_closed(onnx_model, http):
    import socket

    from ganforge.benchmarks.bench.http_server import serving_process

    with serving_process(onnx_model, "onnxruntime", extra_args=("--header-timeout", "1", "--http", http)) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        url = f"{base}/v2/models/generator/infer"
        with httpx.Client() as client:  # a kept-alive connection that keeps working between its requests
            assert [client.post(url, json=_seed_request([1])).status_code for _ in range(3)] == [200] * 3
            huge = client.post(url, json=_seed_request([1]), headers={"X-Pad": "x" * 20_000})
            assert huge.status_code == 400  # a head over 16 KiB
        idle = socket.create_connection(("127.0.0.1", port))
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"POST /v2/models/generator/infer HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        started = time.monotonic()
        for sock in (idle, slow):
            sock.settimeout(20)
            assert sock.recv(100) == b""  # closed by the server
            sock.close()
        assert time.monotonic() - started < 10
        assert httpx.post(url, json=_seed_request([1])).status_code == 200


def test_a_client_that_leaves_mid_body_is_one_log_line_not_an_error(server, caplog):
    import logging
    import socket

    caplog.set_level(logging.WARNING, logger="ganforge.serve")
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /v2/models/generator/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"inputs\": [")  # 12 of 1,000 bytes, then gone
    deadline = time.time() + 10
    while time.time() < deadline and not caplog.records:
        time.sleep(0.05)
    lines = [r for r in caplog.records if r.name == "ganforge.serve"]
    assert len(lines) == 1 and "disconnected before sending its whole request" in lines[0].getMessage()
    assert lines[0].exc_info is None  # one line, no traceback
    text = httpx.get(f"{server.url}/metrics").text
    assert 'status="500"' not in text
    assert httpx.post(f"{server.url}/v2/models/generator/infer", json=_seed_request([1])).status_code == 200


def test_a_body_too_slow_or_too_large_without_a_length_is_refused(onnx_model, running_server, parser):
    """The limits hold for bodies that do not declare their length (chunked), and for a body that never ends."""
    import socket

    with open_runner("onnxruntime", onnx_model) as runner:
        with running_server(runner, ServerConfig(body_timeout_s=0.5, max_body_bytes=2_000), parser) as running:
            url = f"{running.url}/v2/models/generator/infer"
            chunked = httpx.post(url, content=(b" " * 500 for _ in range(10)))  # a generator: sent chunked
            assert chunked.status_code == 413
            assert chunked.json()["error"] == "request body exceeds the limit of 2000 bytes"
            with socket.create_connection(("127.0.0.1", running.port)) as sock:
                sock.sendall(b"POST /v2/models/generator/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                             b"\r\n{\"inputs\"")  # 10 of 100 bytes, then nothing
                sock.settimeout(10)
                started, answer = time.monotonic(), sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 0.5s" in answer
            assert 0.4 < time.monotonic() - started < 5
            assert httpx.post(url, json=_seed_request([1])).status_code == 200


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_a_requested_stop_drains_and_exits_0(onnx_model, stop):
    """Ctrl-C or SIGTERM is a requested stop, as with --workers N: exit 0 once the queue is drained (uvicorn
    re-raised SIGINT as a KeyboardInterrupt, exit 130, and SIGTERM ended the process by the signal)."""
    import signal

    from ganforge.benchmarks.bench.http_server import serving_process

    with serving_process(onnx_model, "onnxruntime") as (base, server):
        assert httpx.post(f"{base}/v2/models/generator/infer", json=_seed_request([1])).status_code == 200
        server.send_signal(getattr(signal, stop))
        assert server.wait(timeout=60) == 0
