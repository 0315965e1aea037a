"""The infer route answered inside the HTTP protocol: the same answers as through ASGI, in order on a connection."""

import json
import socket

import httpx
import numpy as np

from ganforge.serve.http.server import ServerConfig
from ganforge.serve.runtime.runners import open_runner

INFER = "/v2/models/generator/infer"


def _request(seed: int, extra: bytes = b"") -> bytes:
    body = json.dumps({"inputs": [{"name": "seed", "datatype": "INT64", "shape": [1], "data": [seed]}],
                       "outputs": [{"name": "images_uint8", "parameters": {"binary_data": True}}]}).encode()
    return (b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s"
            % (INFER.encode(), len(body), extra, body))


def _read_answers(sock: socket.socket, count: int) -> list[tuple[bytes, dict, bytes]]:
    """``count`` HTTP/1.1 answers, each (status line, headers, body), read until the server closes or they are in."""
    data, answers = b"", []
    while len(answers) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        while b"\r\n\r\n" in data:
            head, rest = data.split(b"\r\n\r\n", 1)
            status, *lines = head.split(b"\r\n")
            headers = dict(line.lower().split(b": ", 1) for line in lines)
            length = int(headers[b"content-length"])
            if len(rest) < length:
                break
            answers.append((status, headers, rest[:length]))
            data = rest[length:]
    return answers


def test_the_hot_path_answers_as_asgi_does(onnx_model, running_server):
    """A query string sends the same request through ASGI: status, body and headers match, errors included."""
    with open_runner("onnxruntime", onnx_model) as runner, running_server(runner, ServerConfig()) as running:
        requests = [
            {"inputs": [{"name": "seed", "datatype": "INT64", "shape": [2], "data": [3, 4]}]},  # JSON floats
            {"inputs": [{"name": "seed", "datatype": "INT64", "shape": [1], "data": [5]}],
             "outputs": [{"name": "images_uint8", "parameters": {"binary_data": True}}]},
            {"inputs": [{"name": "seed", "datatype": "INT64", "shape": [1], "data": [-1]}]},  # 400
            {"inputs": []},  # 400
        ]
        with httpx.Client() as client:
            for body in requests:
                hot = client.post(running.url + INFER, json=body)
                asgi = client.post(running.url + INFER + "?via=asgi", json=body)
                assert (hot.status_code, hot.content) == (asgi.status_code, asgi.content)
                for name in ("content-type", "content-length", "inference-header-content-length"):
                    assert hot.headers.get(name) == asgi.headers.get(name), name
            assert client.post(running.url + INFER, content=b"{").json()["error"] == "request body is not valid JSON"
        metrics = httpx.get(running.url + "/metrics").text
        assert 'ganforge_requests_total{status="200"} 4.0' in metrics  # both paths count their answers
        assert 'ganforge_requests_total{status="400"} 5.0' in metrics


def test_pipelined_requests_are_answered_in_order(onnx_model, running_server):
    """Requests sent back to back on one connection: the first on the hot path, the others queued behind it
    (through ASGI), each answered with its own seed's image, in order, on a connection that stays open."""
    with open_runner("onnxruntime", onnx_model) as runner, running_server(runner, ServerConfig()) as running:
        seeds = [11, 12, 13, 11]
        singles = {}
        for seed in set(seeds):
            with socket.create_connection(("127.0.0.1", running.port)) as sock:
                sock.sendall(_request(seed))
                singles[seed] = _read_answers(sock, 1)[0][2]
        with socket.create_connection(("127.0.0.1", running.port)) as sock:
            sock.settimeout(20)
            sock.sendall(b"".join(_request(seed) for seed in seeds))
            answers = _read_answers(sock, len(seeds))
            assert [a[0] for a in answers] == [b"HTTP/1.1 200 OK"] * len(seeds)
            assert [a[2] for a in answers] == [singles[seed] for seed in seeds]
            assert singles[11] != singles[12]
            sock.sendall(_request(12))  # still open
            assert _read_answers(sock, 1)[0][2] == singles[12]
        images = np.frombuffer(singles[13][-16 * 16:], np.uint8)  # the 16x16 grey image, after the JSON header
        assert images.std() > 0


def test_connection_close_is_honoured(onnx_model, running_server):
    with open_runner("onnxruntime", onnx_model) as runner, running_server(runner, ServerConfig()) as running:
        with socket.create_connection(("127.0.0.1", running.port)) as sock:
            sock.settimeout(20)
            sock.sendall(_request(1, b"Connection: close\r\n"))
            (status, headers, _), = _read_answers(sock, 1)
            assert status == b"HTTP/1.1 200 OK" and headers[b"connection"] == b"close"
            assert sock.recv(100) == b""  # closed by the server
