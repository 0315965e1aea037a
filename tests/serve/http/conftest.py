"""A ganforge server in this process, on uvicorn with the protocol `ganforge serve` runs, for the HTTP tests."""

import threading
import time

import pytest
import uvicorn

from ganforge.local_server import free_ports
from ganforge.serve.http.connections import guarded_protocol
from ganforge.serve.http.server import ServerConfig, create_app
from ganforge.serve.runtime.runners import open_runner

# httptools answers the infer route in the protocol (hot_path.py); h11 sends it through ASGI (server._Service.infer)
PARSERS = ["httptools", "h11"]


class RunningServer:
    def __init__(self, runner, config, parser="httptools"):
        self.port, self.parser = free_ports(1)[0], parser
        self.app = create_app(runner, config)
        protocol = guarded_protocol(10.0, parser, self.app.hot_route)
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="error",
                                                    http=protocol))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started and time.time() < deadline:
            time.sleep(0.02)
        assert self.server.started
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def running_server():
    """RunningServer(runner, config, parser="httptools"), a context manager."""
    return RunningServer


@pytest.fixture(params=PARSERS, ids=["hot-path", "asgi"])
def parser(request):
    return request.param


@pytest.fixture
def server(onnx_model, parser):
    with open_runner("onnxruntime", onnx_model) as runner:
        with RunningServer(runner, ServerConfig(max_batch=16, max_queue_delay_us=20_000), parser) as running:
            yield running
