"""Start `ganforge serve` in a child process for a benchmark (or a test), wait until it is ready, stop it after.

    with serving("g.onnx", "onnxruntime") as base_url:
        httpx.post(f"{base_url}/v2/models/generator/infer", json=...)
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx

from ganforge.errors import UserError
from ganforge.local_server import free_ports


def is_ready(base: str) -> bool:
    """Whether the server at ``base`` answers its readiness probe (``/v2/health/ready``) with 200."""
    try:
        return httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def serving(model: str, backend: str, precision: str = "fp32", device: str = "cpu", max_batch: int = 64,
            delay_us: int = 2000, max_queue: int = 100_000, ready_timeout: float = 120.0,
            extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    with serving_process(model, backend, precision, device, max_batch, delay_us, max_queue, ready_timeout,
                         extra_args) as (base, _):
        yield base


@contextlib.contextmanager
def serving_process(model: str, backend: str, precision: str = "fp32", device: str = "cpu", max_batch: int = 64,
                    delay_us: int = 2000, max_queue: int = 100_000, ready_timeout: float = 120.0,
                    extra_args: tuple[str, ...] = ()) -> Iterator[tuple[str, subprocess.Popen]]:
    """``serving``, also yielding the server process (for its RSS and open files)."""
    port = free_ports(1)[0]
    command = [sys.executable, "-m", "ganforge", "serve", str(model), "--backend", backend,
               "--precision", precision, "--device", device, "--port", str(port), "--max-batch", str(max_batch),
               "--max-queue-delay-us", str(delay_us), "--max-queue", str(max_queue), *extra_args]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if server.poll() is not None:
                raise UserError(f"ganforge serve exited: {server.stderr.read().strip().splitlines()[-1:]}")
            if is_ready(base):
                break
            if time.monotonic() > deadline:
                raise UserError(f"ganforge serve was not ready after {ready_timeout:.0f} s")
            time.sleep(0.1)
        yield base, server
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGINT)  # graceful: drains the queue
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        server.stderr.close()
