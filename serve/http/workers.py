"""`ganforge serve --workers N`: N server processes, one model copy each, behind one listening socket.

The parent binds the port, chooses the backend once, and starts the workers with the spawn method (a fresh
interpreter each: no torch or OpenMP state crosses a fork); the kernel hands each new connection to one of
them. On a CPU the cores are split between the workers (``threads`` each). Prometheus metrics go through
prometheus_client's multiprocess mode, so /metrics on any worker reports the sum over all of them.
A worker that dies takes the server down with a non-zero exit (a supervisor such as systemd or Kubernetes
restarts it whole); SIGINT/SIGTERM drain every worker's queue first.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from multiprocessing.connection import wait
from typing import TYPE_CHECKING

from ganforge.errors import UserError

if TYPE_CHECKING:
    from .server import ServerConfig


@dataclass(frozen=True)
class ServeSpec:
    """Everything a worker needs to serve: picklable, made by `ganforge serve` in the parent."""

    model_path: str
    backend: str
    precision: str
    device: str
    host: str
    server: ServerConfig  # as asked for; a worker serves batches of at most what its model file takes
    header_timeout: float
    keep_alive: float
    http: str = "auto"  # the HTTP parser: httptools where installed, or h11 (connections.guarded_protocol)
    threads: int | None = None  # inference threads per worker (None: the runtime's default, all cores)
    workers: int = 1  # with --device cuda and several workers, worker i runs on cuda:i


def worker_device(spec: ServeSpec, index: int) -> str:
    return f"cuda:{index}" if spec.device == "cuda" and spec.workers > 1 else spec.device


def run_worker(spec: ServeSpec, sock, index: int = 0) -> None:
    """Load the model and serve on ``sock`` until SIGINT/SIGTERM (the in-process path of a single worker too)."""
    if spec.threads:
        from ganforge.export.onnx import use_inference_threads

        use_inference_threads(spec.threads)
    import uvicorn

    from ganforge.serve.runtime.runners import open_runner

    from .connections import MAX_HEAD_BYTES, guarded_protocol
    from .server import create_app

    runner = open_runner(spec.backend, spec.model_path, worker_device(spec, index), spec.precision)
    config = replace(spec.server, max_batch=min(spec.server.max_batch, runner.info.max_batch))
    if index == 0:
        port = sock.getsockname()[1]
        print(f"serving {runner.info.backend} {runner.info.precision} as {config.model_name!r} on "
              f"http://{spec.host}:{port} (max batch {config.max_batch}, delay {config.max_queue_delay_us} us, gap "
              f"{config.batch_gap_us} us, {config.batches_in_flight(runner)} in flight, "
              f"body limit {config.body_limit(runner.info.z_dim)} B)", flush=True)
    app = create_app(runner, config)
    server = uvicorn.Server(uvicorn.Config(
        app, http=guarded_protocol(spec.header_timeout, spec.http, app.hot_route), log_level="warning",
        timeout_graceful_shutdown=30, proxy_headers=False,  # no X-Forwarded-For rewriting per request
        # no uvicorn limit_concurrency: under 2,000 connections it left the server answering nothing, not even
        # health checks (benchmarks/chaos.py); load is bounded by --max-queue (503) and the timeouts instead
        timeout_keep_alive=spec.keep_alive,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES))  # loop "auto": uvloop where installed
    with runner, settled_garbage_collector():
        server.run(sockets=[sock])


@contextlib.contextmanager
def settled_garbage_collector() -> Iterator[None]:
    """Once the model, the runtimes and the app are loaded: move every object alive now out of the collector's
    way (``gc.freeze``), and collect the young generation every 10,000 allocations instead of 700; as before on
    leaving. Under load the objects of requests in flight lived through many young collections, were promoted, and
    set off full collections that walked every object torch, the runtimes and FastAPI had made: measured with wrk at
    128 connections, the event loop's CPU per request fell by a quarter (about 135 -> 100 us) and throughput rose
    about 10%."""
    threshold = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


class _Stopped(Exception):
    pass


def serve_single(spec: ServeSpec, sock) -> int:
    """One worker in this process until Ctrl-C or SIGTERM; the queue is drained, then exit 0 (as with --workers N).
    uvicorn re-raises the signal once its graceful shutdown is done: SIGINT as KeyboardInterrupt (exit 130), and
    SIGTERM, whose default action would end the process by the signal; both are a requested stop."""

    def stopped(signum, frame):
        raise _Stopped

    previous = signal.signal(signal.SIGTERM, stopped)
    try:
        run_worker(spec, sock)
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def _worker_main(spec: ServeSpec, sock, index: int) -> None:
    try:
        run_worker(spec, sock, index)
    except UserError as error:
        print(f"ganforge serve: worker {index}: error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)


def supervise(spec: ServeSpec, sock, workers: int) -> int:
    """Run ``workers`` worker processes on ``sock`` and wait for them; the exit code says how they ended."""
    metrics_dir = tempfile.mkdtemp(prefix="ganforge-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by the workers, read at their import
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker_main, args=(spec, sock, i), name=f"ganforge-serve-{i}")
                 for i in range(workers)]
    stopping = False

    def stop(signum, frame) -> None:
        """SIGTERM to every worker: graceful (a terminal's Ctrl-C already sent them SIGINT; a second SIGINT
        would make uvicorn skip the drain)."""
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive():
                process.terminate()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    print(f"{workers} workers, {spec.threads or 'default'} inference threads each", flush=True)
    try:
        for process in processes:
            process.start()
        pending = {process.sentinel: process for process in processes}
        code = 0
        while pending:
            for sentinel in wait(list(pending)):
                process = pending.pop(sentinel)
                process.join()
                if not stopping:
                    print(f"ganforge serve: worker {process.name} exited with code {process.exitcode}; stopping "
                          "the others", file=sys.stderr, flush=True)
                    code = process.exitcode if process.exitcode and process.exitcode > 0 else 1
                    stop(None, None)
        return code
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)
