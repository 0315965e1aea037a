import json

import torch

from ganforge.benchmarks import sample_e2e


def test_sample_e2e_writes_each_backends_ratio_to_its_offline_rate_on_the_threads_asked(onnx_model, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setenv("GANFORGE_THREADS", "")  # --threads sets it: put back as it was after the test
    threads = torch.get_num_threads()
    out = tmp_path / "e2e.json"
    try:
        assert sample_e2e.main(["--model", onnx_model, "--images", "192", "--backends", "onnxruntime",
                                "--repeats", "1", "--threads", "1", "--helper-priority", "idle,normal",
                                "--out", str(out)]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    results = json.loads(out.read_text())
    row, normal = results["rows"]
    assert (row["helper_priority"], normal["helper_priority"]) == ("idle", "normal")
    assert results["inference_threads"] == 1 and row["backend"] == "onnxruntime"
    assert row["offline_images_per_second"] > 0 and row["sample_images_per_second"] > 0
    assert row["fraction_of_offline"] == row["sample_images_per_second"] / row["offline_images_per_second"]
    assert set(results["helper_ms_per_batch"]) == {"latents", "uint8", "sha256", "crc32", "total"}
    from ganforge.serve.sampling import sampler

    assert sampler._run_shards.__name__ == "_run_shards"  # the timing wrapper is gone once the script is done
    assert sampler.HELPER_IDLE_PRIORITY  # and the sampler's default is back
