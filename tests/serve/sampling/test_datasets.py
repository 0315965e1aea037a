"""WebDataset and Parquet shards, read back with the real webdataset and Hugging Face datasets libraries."""

import json
from pathlib import Path

import numpy as np
import pytest

from ganforge.errors import UserError
from ganforge.serve.sampling.sampler import SampleConfig, sample

SEEDS = tuple(range(30, 55))


def _sample(run, out, **changes):
    values = dict(model=run, backend="torch", out=str(out), seeds=SEEDS, shard_size=10, quiet=True) | changes
    return sample(SampleConfig(**values))


def _bytes(folder, pattern):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).glob(pattern))}


@pytest.fixture(scope="module")
def npz_images(conditional_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("npz")
    _sample(conditional_run, out, truncation=0.8)
    images = {}
    for shard in sorted(out.glob("shard-*.npz")):
        with np.load(shard) as data:
            images |= dict(zip(data["seeds"].tolist(), data["images"]))
    return images


def test_webdataset_shards_hold_each_seeds_image_and_record(conditional_run, npz_images, tmp_path):
    import webdataset as wds

    manifest = json.loads(_sample(conditional_run, tmp_path / "a", format="webdataset", truncation=0.8).read_text())
    assert [s["file"] for s in manifest["shards"]] == ["shard-00000.tar", "shard-00001.tar", "shard-00002.tar"]
    samples = list(wds.WebDataset(str(tmp_path / "a" / "shard-{00000..00002}.tar"), shardshuffle=False)
                   .decode("rgb8"))
    assert [int(s["__key__"]) for s in samples] == list(SEEDS)
    for item in samples:
        record = item["json"]
        assert record["seed"] == int(item["__key__"]) and record["truncation"] == 0.8
        assert (record["backend"], record["model_sha256"]) == ("torch", manifest["model_sha256"])
        assert len(record["class"]) == 1 and 0 <= record["class"][0] < 10
        assert np.array_equal(item["png"][..., :1], npz_images[record["seed"]])  # lossless: the npz's pixels
    _sample(conditional_run, tmp_path / "b", format="webdataset", truncation=0.8, batch_size=7, workers=1)
    assert _bytes(tmp_path / "a", "*.tar") == _bytes(tmp_path / "b", "*.tar")  # any batch size, same bytes


def test_parquet_shards_load_as_a_hugging_face_dataset_with_an_image_column(conditional_run, npz_images, tmp_path):
    import datasets

    _sample(conditional_run, tmp_path / "a", format="parquet", truncation=0.8, classes=(4,))
    table = datasets.load_dataset("parquet", data_files=str(tmp_path / "a" / "shard-*.parquet"), split="train",
                                  cache_dir=str(tmp_path / "hf-cache"))
    assert isinstance(table.features["image"], datasets.Image) and table["seed"] == list(SEEDS)
    assert all(row == [4] for row in table["class"])
    assert json.loads(table[0]["json"])["class"] == [4]
    plain = datasets.load_dataset("parquet", data_files=str(tmp_path / "a" / "shard-00000.parquet"),
                                  split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert np.asarray(plain[0]["image"]).shape == (16, 16)
    _sample(conditional_run, tmp_path / "b", format="parquet", truncation=0.8, classes=(4,), batch_size=3)
    assert _bytes(tmp_path / "a", "*.parquet") == _bytes(tmp_path / "b", "*.parquet")
    _sample(conditional_run, tmp_path / "c", format="parquet", truncation=0.8)
    first = datasets.load_dataset("parquet", data_files=str(tmp_path / "c" / "shard-*.parquet"), split="train",
                                  cache_dir=str(tmp_path / "hf-cache"))
    assert np.array_equal(np.asarray(first[0]["image"]), npz_images[SEEDS[0]][..., 0])


@pytest.mark.parametrize("fmt", ["webdataset", "parquet"])
def test_a_damaged_shard_is_redone_on_resume(conditional_run, tmp_path, fmt):
    out = tmp_path / "s"
    _sample(conditional_run, out, format=fmt)
    before = _bytes(out, "shard-*")
    damaged = sorted(out.glob("shard-*"))[1]
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # as a crash in a copy would leave it
    _sample(conditional_run, out, format=fmt, resume=True)
    assert _bytes(out, "shard-*") == before


def test_jpeg_and_webp_images_and_what_cannot_be_asked(conditional_run, tmp_path):
    import webdataset as wds

    _sample(conditional_run, tmp_path / "j", format="webdataset", image_format="jpeg")
    keys = next(iter(wds.WebDataset(str(tmp_path / "j" / "shard-00000.tar"), shardshuffle=False))).keys()
    assert {"jpg", "json"} <= set(keys)
    with pytest.raises(UserError, match="--image-format applies to --format webdataset and parquet"):
        SampleConfig(model="m", out="o", seeds=(1,), image_format="jpeg")
    with pytest.raises(UserError, match="unknown --format"):
        SampleConfig(model="m", out="o", seeds=(1,), format="tfrecord")
