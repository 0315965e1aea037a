import numpy as np
import pytest
import torch

from ganforge.errors import UserError
from ganforge.export.api import ExportConfig, export
from ganforge.images import to_uint8_nhwc
from ganforge.latents import latents_for_seeds
from ganforge.serve.runtime.model_files import model_for_backend
from ganforge.serve.runtime.runners import backends, copies, on_own_stream, open_runner


def test_every_backend_is_listed_with_availability():
    found = backends()
    assert {"torch", "torch-compile", "torch-cudagraph", "onnxruntime", "openvino", "aoti", "tensorrt"} <= set(found)
    assert found["onnxruntime"].availability() is None
    tensorrt_reason = found["tensorrt"].availability()
    assert tensorrt_reason is None or "TensorRT" in tensorrt_reason or "GPU" in tensorrt_reason


@pytest.mark.slow
def test_same_seed_same_image_on_every_cpu_backend(trained_run, onnx_model, tmp_path):
    aoti = export(ExportConfig(source=str(trained_run), out=str(tmp_path / "g.pt2"), max_batch=16)).path
    models = {"torch": str(trained_run), "torch-compile": str(trained_run), "onnxruntime": onnx_model,
              "openvino": onnx_model, "aoti": str(aoti)}
    z = latents_for_seeds([0, 1, 2, 99], 8)
    outputs = {}
    for name, model in models.items():
        with open_runner(name, model_for_backend(model, name)) as runner:
            assert runner.info.backend == name
            outputs[name] = runner.infer(z)
    reference = outputs["torch"]
    assert reference.shape == (4, 1, 16, 16)
    for name, images in outputs.items():
        np.testing.assert_allclose(images, reference, atol=1e-4, err_msg=name)
    with pytest.raises(UserError, match="compiled for cpu, not cuda: export again with --device cuda"):
        open_runner("aoti", str(aoti), device="cuda")


def test_cuda_graph_backend_says_it_needs_a_gpu(trained_run):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="torch-cudagraph is not available here: needs a CUDA GPU"):
        open_runner("torch-cudagraph", str(trained_run), device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_backends_match_cpu_fp32_and_replay_graphs_per_batch_size(trained_run):
    z = latents_for_seeds(range(7), 8)
    with open_runner("torch", str(trained_run)) as runner:
        reference = runner.infer(z)
    for precision, tolerance in (("fp32", 1e-4), ("fp16", 1e-2)):
        for name in ("torch", "torch-cudagraph"):
            with open_runner(name, str(trained_run), device="cuda", precision=precision) as runner:
                for batch in (7, 3, 7):  # a graph per batch size, replayed with new inputs
                    np.testing.assert_allclose(runner.infer(z[:batch]), reference[:batch], atol=tolerance,
                                               err_msg=f"{name} {precision} batch {batch}")
                assert runner.device_call(z)().device.type == "cuda"
                assert runner.info.cuda_graphs == (name == "torch-cudagraph")
                assert np.array_equal(runner.infer_uint8(z), to_uint8_nhwc(runner.infer(z)))  # on the device


def _alternating(infers: list, batches: list) -> list:
    """``batches`` split between two infer callables computing at once, one thread each (as the batcher runs model
    copies), the images put back in the batches' order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        halves = [pool.submit(lambda infer, part: [infer(z) for z in part], infer, batches[i::2])
                  for i, infer in enumerate(infers)]
        return [halves[k % 2].result()[k // 2] for k in range(len(batches))]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_two_model_copies_on_their_own_streams_compute_at_once_and_agree(trained_run):
    batches = [latents_for_seeds(range(i * 64, i * 64 + 64), 8) for i in range(16)]
    for name in ("torch", "torch-cudagraph"):
        with open_runner(name, str(trained_run), device="cuda") as runner:
            expected = [runner.infer(z) for z in batches]
            (copy,) = copies(runner, 1)
            got = _alternating([on_own_stream(runner), on_own_stream(copy)], batches)
            copy.close()
        for k, (images, reference) in enumerate(zip(got, expected)):
            np.testing.assert_array_equal(images, reference, err_msg=f"{name} batch {k}")


def test_runner_rejects_wrong_shapes(onnx_model):
    with open_runner("onnxruntime", onnx_model) as runner:
        with pytest.raises(UserError, match=r"z must be \[n, 8\]"):
            runner.infer(np.zeros((2, 5), np.float32))
        with pytest.raises(UserError, match="outside 1..256"):
            runner.infer(np.zeros((257, 8), np.float32))


def test_backend_gets_the_file_it_needs(trained_run, onnx_model):
    with pytest.raises(UserError, match="needs a run folder or checkpoint"):
        model_for_backend(onnx_model, "torch")
    with pytest.raises(UserError, match="build-engine"):
        model_for_backend(trained_run, "tensorrt")
    with pytest.raises(UserError, match="unknown backend"):
        model_for_backend(trained_run, "tflite")


def test_openvino_int8_is_quantized_reproducibly_and_stays_close(onnx_model):
    from ganforge.export.verify import psnr

    z = latents_for_seeds(range(16), 8)
    with open_runner("openvino", onnx_model) as runner:
        reference = runner.infer(z)
    outputs = []
    for _ in range(2):
        with open_runner("openvino", onnx_model, precision="int8") as runner:
            assert runner.info.precision == "int8"
            outputs.append(runner.infer(z))
    np.testing.assert_array_equal(outputs[0], outputs[1])  # calibration on fixed seeds: the same int8 model
    assert not np.array_equal(outputs[0], reference)  # really quantized
    assert psnr(reference, outputs[0]) > 25


def test_openvino_bf16_runs_bf16_or_says_why_not(onnx_model):
    from ganforge.machine import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        assert "bf16" not in backends()["openvino"].precisions
        return
    z = latents_for_seeds(range(4), 8)
    try:
        with open_runner("openvino", onnx_model, precision="bf16") as runner:
            images = runner.infer(z)
    except UserError as error:  # e.g. AVX512-BF16 without AMX: deconvolutions stay fp32
        assert "no bf16 kernels" in str(error)
        return
    with open_runner("openvino", onnx_model) as runner:
        assert not np.array_equal(images, runner.infer(z))  # a bf16 label on fp32 work would be a lie


def test_onnxruntime_gpu_providers_get_profiles_a_cache_and_no_tf32():
    from ganforge.serve.runtime.runners.onnxruntime_runner import gpu_provider_options

    options = gpu_provider_options("/models/g.onnx", 100, 256, "fp32")
    trt = options["TensorrtExecutionProvider"]
    assert (trt["trt_profile_min_shapes"], trt["trt_profile_opt_shapes"], trt["trt_profile_max_shapes"]) == \
        ("z:1x100", "z:64x100", "z:256x100")
    assert trt["trt_engine_cache_enable"] and trt["trt_engine_cache_path"] == "/models/g.onnx.trt-cache"
    assert trt["trt_fp16_enable"] is False and options["CUDAExecutionProvider"]["use_tf32"] == 0
    fp16 = gpu_provider_options("g.onnx", 8, 16, "fp16")["TensorrtExecutionProvider"]
    assert fp16["trt_profile_opt_shapes"] == "z:16x8" and fp16["trt_fp16_enable"] is True


def test_openvino_copies_are_streams_of_one_model_that_compute_at_once_and_agree(onnx_model):
    """Separately compiled OpenVINO models take turns on the plugin's executor; streams of one model overlap."""
    pytest.importorskip("openvino")
    batches = [latents_for_seeds(range(i * 16, i * 16 + 16), 8) for i in range(8)]
    with open_runner("openvino", onnx_model) as runner:
        expected = [runner.infer(z) for z in batches]
        (copy,) = copies(runner, 1)
        assert copy.compiled is runner.compiled and int(runner.compiled.get_property("NUM_STREAMS")) == 2
        assert copy.request is not runner.request
        got = _alternating([runner.infer, copy.infer], batches)
        assert copy.cores is runner.cores  # one account of the cores for the runner and its copies
        assert int(runner.cores.whole[0].get_property("NUM_STREAMS")) == 1  # the model compiled for every core
        whole = _Counting(runner.cores.whole[1])
        runner.cores.whole = (runner.cores.whole[0], whole)
        alone = copy.infer(batches[0])  # nothing else computing: on every core
        assert whole.calls == 1
        copies(runner, 1)
        assert runner.cores.whole[1] is whole  # copies made again keep the model compiled for every core
        copy.close()
    for k, (images, reference) in enumerate(zip(got, expected)):
        np.testing.assert_array_equal(images, reference, err_msg=f"batch {k}")
    np.testing.assert_array_equal(alone, expected[0])


class _Counting:
    """An OpenVINO infer request or an onnxruntime session that counts its calls."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def infer(self, *args):
        self.calls += 1
        return self.inner.infer(*args)

    def run(self, *args):
        self.calls += 1
        return self.inner.run(*args)


def test_copies_sharing_the_cores_compute_alone_on_every_core_and_beside_each_other_on_their_share():
    """The first batch of an idle server runs alone (every core); one that begins while another computes shares."""
    import threading

    from ganforge.serve.runtime.runners.base import CoreShare

    cores, seen = CoreShare("whole"), []
    first_in, second_done = threading.Event(), threading.Event()

    def first() -> None:
        with cores.pick("first's share") as model:
            seen.append(model)
            first_in.set()
            second_done.wait(5)

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(5)
    with cores.pick("second's share") as model:
        seen.append(model)
    second_done.set()
    thread.join()
    with cores.pick("third's share") as model:
        seen.append(model)
    assert seen == ["whole", "second's share", "whole"]


def test_servers_keep_two_batches_in_flight_on_a_cpu_where_the_copies_share_the_cores(onnx_model, monkeypatch):
    from ganforge.serve.http.server import ServerConfig

    monkeypatch.setenv("GANFORGE_THREADS", "2")
    with open_runner("onnxruntime", onnx_model) as runner:
        assert ServerConfig().batches_in_flight(runner) == 2
        assert ServerConfig(in_flight=3).batches_in_flight(runner) == 3
        monkeypatch.setenv("GANFORGE_THREADS", "1")  # one core to compute on: nothing to share
        assert ServerConfig().batches_in_flight(runner) == 1


def test_onnxruntime_copies_on_a_cpu_split_the_threads_sleep_between_calls_and_agree(onnx_model, monkeypatch):
    """Batches in flight on onnxruntime: the sessions split the threads asked for (as OpenVINO's streams; at least
    one each), none of them spinning, and every copy computes the same images."""
    monkeypatch.setenv("GANFORGE_THREADS", "5")
    batches = [latents_for_seeds(range(i * 16, i * 16 + 16), 8) for i in range(8)]
    with open_runner("onnxruntime", onnx_model) as runner:
        expected = [runner.infer(z) for z in batches]
        (copy,) = copies(runner, 1)
        options = [session.get_session_options() for session in (runner.session, copy.session, runner.cores.whole)]
        assert [o.intra_op_num_threads for o in options] == [2, 2, 5] and copy.session is not runner.session
        assert [o.get_session_config_entry("session.intra_op.allow_spinning") for o in options[:2]] == ["0", "0"]
        got = _alternating([runner.infer, copy.infer], batches)
        assert copy.cores is runner.cores
        whole = runner.cores.whole = _Counting(runner.cores.whole)
        alone = copy.infer(batches[0])  # nothing else computing: on every thread
        assert whole.calls == 1
        many = copies(runner, 7)  # more copies than threads: one thread each
        assert {each.session.get_session_options().intra_op_num_threads for each in many} == {1}
        assert runner.cores.whole is whole  # copies made again keep the session on every thread
    for k, (images, reference) in enumerate(zip(got, expected)):
        np.testing.assert_array_equal(images, reference, err_msg=f"batch {k}")
    np.testing.assert_array_equal(alone, expected[0])
