import os
import signal
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from ganforge.benchmarks.bench.http_server import serving_process


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        try:
            stat = open(f"/proc/{entry}/stat").read()
        except (OSError, ValueError):
            continue
        if entry.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


@pytest.mark.slow
def test_two_workers_serve_one_port_and_their_metrics_add_up(onnx_model):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 cores")
    body = lambda seed: {"inputs": [{"name": "seed", "datatype": "INT64", "shape": [1], "data": [seed]}]}  # noqa: E731
    with serving_process(onnx_model, "onnxruntime", extra_args=("--workers", "2")) as (base, server):
        children = _children(server.pid)
        with httpx.Client(timeout=30) as client:
            single = client.post(f"{base}/v2/models/generator/infer", json=body(5)).json()
        with ThreadPoolExecutor(8) as pool:  # fresh connections: the kernel spreads them over both workers
            answers = list(pool.map(lambda s: httpx.post(f"{base}/v2/models/generator/infer", json=body(s),
                                                         timeout=30), [5] * 39))
        assert all(a.status_code == 200 for a in answers)
        assert all(a.json()["outputs"] == single["outputs"] for a in answers)  # same model, same image
        for _ in range(3):  # whichever worker answers the scrape reports the sum over both
            text = httpx.get(f"{base}/metrics", timeout=10).text
            assert 'ganforge_requests_total{status="200"} 40.0' in text
        workers = [pid for pid in children if "spawn_main" in open(f"/proc/{pid}/cmdline").read()]
        assert len(workers) == 2
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0
    assert not any(os.path.exists(f"/proc/{pid}") and "spawn_main" in open(f"/proc/{pid}/cmdline").read()
                   for pid in workers)


def _serving_state(onnx_model, monkeypatch, probe, threads: int | None = None) -> dict:
    """Run a worker up to the point where it would serve (uvicorn's ``run`` replaced) and return ``probe()`` as it
    was then."""
    import uvicorn

    from ganforge.serve.http.cli import listen
    from ganforge.serve.http.server import ServerConfig
    from ganforge.serve.http.workers import ServeSpec, run_worker

    seen = {}
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: seen.update(probe()))
    with listen("127.0.0.1", 0) as sock:
        run_worker(ServeSpec(onnx_model, "onnxruntime", "fp32", "cpu", "127.0.0.1", ServerConfig(), 10.0, 5.0,
                             threads=threads), sock)
    return seen


def test_a_worker_serves_with_the_loaded_objects_out_of_the_collectors_way(onnx_model, monkeypatch):
    """Full collections walking every object torch and the runtimes made cost the event loop a quarter of its time
    under load: a worker freezes what it loaded and collects the young generation less often before serving."""
    import gc

    threshold = gc.get_threshold()
    seen = _serving_state(onnx_model, monkeypatch, lambda: {"frozen": gc.get_freeze_count(),
                                                            "threshold": gc.get_threshold()})
    assert seen["frozen"] > 10_000 and seen["threshold"][0] == 10_000
    assert gc.get_freeze_count() == 0 and gc.get_threshold() == threshold  # as before, once it stopped serving


def test_a_worker_given_threads_opens_its_runtime_on_that_many(onnx_model, monkeypatch):
    """`ganforge serve --threads 1`: the runtime computes on one thread, the other cores left to the HTTP path."""
    import torch

    monkeypatch.setenv("GANFORGE_THREADS", "")  # empty: the default; put back as it was after the test
    threads = torch.get_num_threads()
    try:
        seen = _serving_state(onnx_model, monkeypatch, lambda: {"torch": torch.get_num_threads(),
                                                                "env": os.environ.get("GANFORGE_THREADS")}, threads=1)
    finally:
        torch.set_num_threads(threads)
    assert seen == {"torch": 1, "env": "1"}
