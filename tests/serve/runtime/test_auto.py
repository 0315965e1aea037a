import json
from pathlib import Path

import pytest

from ganforge.errors import UserError
from ganforge.serve.runtime.auto import AutoConfig, candidates, choose, native_precisions
from ganforge.serve.sampling.sampler import SampleConfig, sample

FAST = dict(backends=("onnxruntime", "openvino"), seconds=0.2, quiet=True)


@pytest.fixture
def model(onnx_copy) -> Path:
    return onnx_copy


def test_auto_picks_the_fastest_accurate_candidate_and_caches_it(model):
    first = choose(AutoConfig(model=str(model), **FAST))
    timed = [row for row in first.table if "images_per_second" in row]
    assert timed and all(row["psnr_db"] is None or row["psnr_db"] >= 40 for row in timed)
    assert first.images_per_second == max(row["images_per_second"] for row in timed)
    assert (first.backend, first.precision) in candidates(model, "cpu", None, FAST["backends"])
    assert not first.cached and model.with_name(model.name + ".auto.json").is_file()

    again = choose(AutoConfig(model=str(model), **FAST))
    assert again.cached and (again.backend, again.precision, again.model_path) == \
        (first.backend, first.precision, first.model_path)
    other_batch = choose(AutoConfig(model=str(model), batch_size=8, **FAST))  # another key: measured
    assert not other_batch.cached


def test_a_model_file_is_only_offered_what_it_is(model):
    pairs = candidates(model, "cpu")
    assert ("onnxruntime", "fp32") in pairs and ("openvino", "fp32") in pairs
    # onnxruntime runs the file as written (fp32): an "int8" row would be a fp32 model under another name
    assert ("onnxruntime", "int8") not in pairs
    assert all(name not in ("torch", "torch-compile", "aoti") for name, _ in pairs)
    assert "fp32" in native_precisions("cpu")


def test_a_corrupt_or_foreign_cache_is_measured_again(model, capsys):
    cache = model.with_name(model.name + ".auto.json")
    cache.write_text("{not json")
    choice = choose(AutoConfig(model=str(model), **FAST))
    assert not choice.cached and "ignoring" in capsys.readouterr().err
    body = json.loads(cache.read_text())
    entry = next(iter(body["entries"].values()))
    entry["model_file_sha256"] = "0" * 64  # the chosen file changed since it was measured
    cache.write_text(json.dumps(body))
    assert not choose(AutoConfig(model=str(model), **FAST)).cached


def test_no_candidate_within_the_bound_is_one_clear_error(model):
    with pytest.raises(UserError, match="no backend reached PSNR >= 150 dB"):
        choose(AutoConfig(model=str(model), precisions=("int8",), min_psnr=150, **FAST))
    for bad in (5, 200, float("nan")):
        with pytest.raises(UserError, match="--min-psnr must be between"):
            AutoConfig(model=str(model), min_psnr=bad)


def test_sample_with_auto_records_the_choice_and_resumes_with_it(model, tmp_path):
    out = tmp_path / "s"
    config = SampleConfig(model=str(model), out=str(out), seeds=tuple(range(20)), shard_size=10, quiet=True)
    manifest = json.loads(sample(config).read_text())
    chosen = (manifest["backend"], manifest["precision"])
    assert chosen in candidates(model, "cpu")
    # a resume keeps the backend the folder was started with, even when the cache is gone
    model.with_name(model.name + ".auto.json").unlink(missing_ok=True)  # (20 images: a bounded choice, not cached)
    (out / "manifest.json").write_text(json.dumps({**manifest, "complete": False, "shards": manifest["shards"][:1]}))
    resumed = json.loads(sample(SampleConfig(**{**config.__dict__, "resume": True})).read_text())
    assert (resumed["backend"], resumed["precision"]) == chosen and resumed["shards"] == manifest["shards"]
    assert not model.with_name(model.name + ".auto.json").exists()


def test_a_small_job_starts_at_once_and_a_large_one_measures_every_candidate(model):
    cache = model.with_name(model.name + ".auto.json")
    small = choose(AutoConfig(model=str(model), images=10, **FAST))
    assert (small.backend, small.precision, small.table) == ("onnxruntime", "fp32", [])
    assert "more than it could save" in small.reason and not cache.exists()  # a partial answer is not cached
    large = choose(AutoConfig(model=str(model), images=10**9, **FAST))
    measured = {(row["backend"], row["precision"]) for row in large.table}
    assert measured == set(candidates(model, "cpu", None, FAST["backends"])) and cache.is_file()
