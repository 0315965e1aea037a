import json
import os
import subprocess
import textwrap

import numpy as np
import pytest
from PIL import Image

from ganforge.benchmarks.bench.report import write_reports
from ganforge.benchmarks.bench.run import BenchConfig, bench
from ganforge.errors import UserError


@pytest.fixture(scope="module")
def report(trained_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    config = BenchConfig(model=str(trained_run), out=str(out), backends=("onnxruntime", "torch", "tensorrt"),
                         precisions=("fp32", "int8"), batch_sizes=(1, 8), min_duration=0.15, server_duration=0.2,
                         latency_bound_ms=1000)
    result = bench(config, progress=False)
    # bench.json is rewritten after every backend, so an interrupted run keeps what it measured
    assert len(json.loads((out / "bench.json").read_text())["results"]) == len(result["results"])
    return result


def test_results_follow_the_schema(report):
    env = report["environment"]
    assert {"cpu", "cores", "gpu", "versions", "matmul_fp32_gflops", "torch_threads"} <= set(env)
    ok = [r for r in report["results"] if r["status"] == "ok"]
    assert {(r["backend"], r["precision"]) for r in ok} == {("onnxruntime", "fp32"), ("onnxruntime", "int8"),
                                                             ("torch", "fp32")}
    for row in ok:
        assert {"backend", "precision", "scenario", "batch_size", "status"} <= set(row)
        if row["scenario"] in ("offline", "server"):
            assert row["images_per_second"] > 0
        if row["scenario"] in ("single-stream", "server") and row["scenario"] != "server":
            assert row["latency_ms"]["p50"] <= row["latency_ms"]["p90"] <= row["latency_ms"]["p99"]
    offline = [r for r in ok if r["scenario"] == "offline"]
    assert sorted({r["batch_size"] for r in offline}) == [1, 8]
    assert all(r["gflops_per_second"] > 0 and "max_abs_error" in r for r in offline)
    assert all(r["io"] == "host" and r["cuda_graphs"] is False for r in offline)  # device-only rows need a GPU
    server = next(r for r in ok if r["scenario"] == "server")
    assert server["points"] and server["points"][0]["latency_ms"]["p99"] > 0


def test_a_failing_backend_is_reported_and_the_rest_still_run(report):
    failed = [r for r in report["results"] if r["backend"] == "tensorrt"]
    assert len(failed) == 1 and failed[0]["status"] == "error" and "engine" in failed[0]["error"]
    assert any(r["backend"] == "torch" and r["status"] == "ok" for r in report["results"])


def test_reports_are_written(report, tmp_path):
    paths = write_reports(report, tmp_path)
    data = json.loads((tmp_path / "bench.json").read_text())
    assert set(data) == {"environment", "results"} and len(data["results"]) == len(report["results"])
    assert all("latencies_ms" not in row for row in data["results"])
    markdown = (tmp_path / "bench.md").read_text()
    assert markdown.startswith("| backend | precision | scenario |") and "onnxruntime | int8 | offline" in markdown
    for name in ("throughput.png", "latency.png"):
        with Image.open(tmp_path / name) as image:
            assert image.size[0] > 300
    assert len(paths) == 4


def test_bad_bench_input(tmp_path, trained_run, ganforge_cli):
    with pytest.raises(UserError, match="unknown backend"):
        BenchConfig(model=str(trained_run), out=str(tmp_path), backends=("tflite",)).backend_names()
    with pytest.raises(UserError, match="unknown scenario"):
        BenchConfig(model=str(trained_run), out=str(tmp_path), scenarios=("burst",))
    result = subprocess.run([ganforge_cli, "bench", str(tmp_path / "missing"), "--out", str(tmp_path / "b")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "no such file" in result.stderr


@pytest.mark.slow
def test_server_over_http_starts_ganforge_serve_and_stops_at_saturation(trained_run, tmp_path):
    config = BenchConfig(model=str(trained_run), out=str(tmp_path), backends=("onnxruntime",), batch_sizes=(16,),
                         scenarios=("offline", "server-http"), min_duration=0.3, server_duration=0.5,
                         latency_bound_ms=500, server_max_batch=16)
    row = next(r for r in bench(config, progress=False)["results"] if r["scenario"] == "server-http")
    assert row["status"] == "ok", row.get("error")
    points = row["points"]
    assert points[0]["completed"] > 0 and points[0]["latency_ms"]["p50"] > 0
    assert row["images_per_second"] > 0 and row["max_in_flight"] == 128
    # rates rise until one is saturated (dropped, refused or timed out), and no higher rate is tried after it
    assert all(p["rejected"] == 0 for p in points[:-1])
    assert [p["offered_rate"] for p in points] == sorted(p["offered_rate"] for p in points)


@pytest.mark.parametrize("rate, sizes", [(10.0, [1024]), (150.0, [1024, 2048]), (1000.0, [1024, 2048, 4096])])
def test_the_ceiling_measures_a_larger_matrix_only_where_one_product_fits_in_a_window(monkeypatch, rate, sizes):
    from ganforge.benchmarks.bench import environment

    measured = []
    monkeypatch.setattr(environment, "_peak", lambda call, n, seconds: measured.append(n) or rate)
    assert environment.matmul_ceiling_gflops("cpu", "fp32", seconds=2.0) == rate
    assert measured == [*sizes, 2048]  # torch's sizes, then NumPy's BLAS at 2048


def test_no_row_exceeds_the_matmul_ceiling():
    from ganforge.benchmarks.bench.run import raise_ceilings

    report = {"environment": {"matmul_gflops": {"fp32": 100.0, "bf16": 400.0}},
              "results": [{"ceiling_precision": "fp32", "gflops_per_second": 80.0},
                          {"ceiling_precision": "fp32", "gflops_per_second": 120.0},
                          {"ceiling_precision": "bf16", "gflops_per_second": 200.0},
                          {"precision": "int8", "gflops_per_second": 900.0}]}  # no int8 ceiling: no percentage
    raise_ceilings(report)
    rows = report["results"]
    assert [r.get("percent_of_matmul_ceiling") for r in rows] == [pytest.approx(100 * 80 / 120), 100.0, 50.0, None]
    assert report["environment"]["ceiling_raised"] == {"fp32": {"measured": 100.0, "raised_to": 120.0}}
    rows.append({"ceiling_precision": "fp32", "gflops_per_second": 150.0})
    raise_ceilings(report)  # raised again: still reports what was measured
    assert report["environment"]["ceiling_raised"]["fp32"] == {"measured": 100.0, "raised_to": 150.0}


def test_auto_is_a_row_of_bench_measured_in_the_same_run(onnx_copy, tmp_path):
    report = bench(BenchConfig(model=str(onnx_copy), out=str(tmp_path / "b"), backends=("auto", "onnxruntime"),
                               precisions=("fp32",), batch_sizes=(8,), scenarios=("offline",), min_duration=0.2),
                   progress=False)
    rows = {(r["backend"], r["precision"]): r for r in report["results"]}
    auto = [key for key in rows if key[0].startswith("auto:")]
    assert len(auto) == 1 and auto[0][1] == "fp32" and rows[auto[0]]["status"] == "ok"
    assert auto[0][0].removeprefix("auto:") in ("onnxruntime", "openvino")
    assert rows[("onnxruntime", "fp32")]["images_per_second"] > 0


def test_offline_host_uint8_times_the_runners_uint8_path(trained_run):
    """The GPU sampling path's offline row (bench adds it on GPUs); its timing works on any runner that has it."""
    from ganforge.benchmarks.bench.scenarios import offline
    from ganforge.serve.runtime.runners import open_runner

    with open_runner("torch", str(trained_run)) as runner:
        calls = []
        convert = runner.infer_uint8
        runner.infer_uint8 = lambda z: calls.append(len(z)) or convert(z)
        result = offline(runner, 4, 0.1, io="host-uint8")
    assert result["images_per_second"] > 0 and calls and set(calls) == {4}


def test_openvino_offline_keeps_two_batches_in_flight_on_its_streams(onnx_model):
    """OpenVINO overlaps batches within one compiled model (streams): bench keeps two in flight there, as its own
    benchmark_app does; onnxruntime's threads already fill the cores and get one."""
    from ganforge.benchmarks.bench.scenarios import offline
    from ganforge.serve.runtime.runners import open_runner
    from ganforge.serve.runtime.runners.base import offline_in_flight

    with open_runner("openvino", onnx_model) as runner:
        calls = []
        original = runner.copies
        runner.copies = lambda count: calls.append(count) or original(count)
        result = offline(runner, 8, 0.3, in_flight=offline_in_flight(runner))
        assert result["batches_in_flight"] == 2 and result["images_per_second"] > 0 and calls == [1]
        assert len(result["window_rates"]) == 3 and min(result["window_rates"]) > 0
    with open_runner("onnxruntime", onnx_model) as runner:
        assert offline_in_flight(runner) == 1


CRASH = textwrap.dedent("""
    import os, signal
    import ganforge.benchmarks.bench.run as bench

    measure = bench._measure

    def crashing(config, runner, backend, precision, scenario, *rest):  # as a runtime's native code would
        if (backend, scenario) == ("onnxruntime", "single-stream"):
            os.kill(os.getpid(), signal.SIGSEGV)
        return measure(config, runner, backend, precision, scenario, *rest)

    bench._measure = crashing
""")


def test_a_backend_that_crashes_the_process_costs_its_rows_only(onnx_copy, tmp_path, monkeypatch):
    (tmp_path / "sitecustomize.py").write_text(CRASH)  # run by every Python on this path: bench's children too
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    config = BenchConfig(model=str(onnx_copy), out=str(tmp_path / "b"), backends=("onnxruntime", "openvino"),
                         precisions=("fp32",), batch_sizes=(8,), scenarios=("offline", "single-stream"),
                         min_duration=0.1)
    report = bench(config, progress=False)
    rows = [(r["backend"], r["scenario"], r["status"], r.get("error")) for r in report["results"]]
    assert rows == [("onnxruntime", "offline", "ok", None),  # measured before the crash: kept
                    ("onnxruntime", "single-stream", "error", "crashed the process (killed by SIGSEGV)"),
                    ("openvino", "offline", "ok", None), ("openvino", "single-stream", "ok", None)]
    assert json.loads((tmp_path / "b" / "bench.json").read_text())["results"][1]["error"].startswith("crashed")


def test_truncation_reaches_the_latents_and_the_requests_that_bench_times(trained_run, tmp_path):
    """`bench --truncation` times the runner on the latents `sample --truncation` makes, and the server scenarios
    send it as the request parameter `serve` reads; psi outside (0, 1] is one clear error."""
    from ganforge.benchmarks.bench.http_scenario import seed_request
    from ganforge.benchmarks.bench.scenarios import offline, single_stream
    from ganforge.latents import LatentControls, latents_for_seeds
    from ganforge.serve.runtime.runners import open_runner

    with open_runner("torch", str(trained_run)) as runner:
        seen = []
        infer = runner.infer
        runner.infer = lambda z: seen.append(z.copy()) or infer(z)
        controls = LatentControls(0.5)
        offline(runner, 4, 0.05, controls=controls)
        single_stream(runner, 0.05, controls)
    z_dim = seen[0].shape[1]
    assert np.array_equal(seen[0], latents_for_seeds(range(4), z_dim, controls))
    assert np.array_equal(seen[-1], latents_for_seeds([0], z_dim, controls))
    assert not np.array_equal(seen[0], latents_for_seeds(range(4), z_dim))
    assert seed_request([7], 0.5)["parameters"] == {"binary_data_output": True, "truncation": 0.5}
    assert "truncation" not in seed_request([7])["parameters"]  # psi 1: today's request, byte for byte
    report = bench(BenchConfig(model=str(trained_run), out=str(tmp_path), backends=("torch",), precisions=("fp32",),
                               batch_sizes=(4,), scenarios=("offline", "server"), min_duration=0.1,
                               server_duration=0.2, truncation=0.5), progress=False)
    assert report["truncation"] == 0.5 and all(r["status"] == "ok" and r["truncation"] == 0.5
                                               for r in report["results"])
    with pytest.raises(UserError, match="truncation"):
        BenchConfig(model=str(trained_run), out=str(tmp_path), truncation=1.5)
