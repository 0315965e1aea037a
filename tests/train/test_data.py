import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from ganforge.errors import UserError
from ganforge.train.data import load_data


@pytest.mark.parametrize("spec, shape", [
    ("digits", (1, 16, 16)), ("stacked-digits", (3, 16, 16)), ("shapes", (3, 16, 16)),
])
def test_builtin_image_sources_give_unit_range_batches(spec, shape):
    source = load_data(spec, resolution=16, seed=0)
    batch = source.stream.next_batch(32)
    assert source.kind == "images" and source.sample_shape == shape
    assert batch.shape == (32, *shape) and batch.dtype == torch.float32
    assert batch.min() >= -1 and batch.max() <= 1 and batch.std() > 0.1


def test_digits_keep_labels_and_resize_to_64():
    source = load_data("digits", resolution=64, seed=0)
    assert source.labels is not None and len(source.labels) == source.num_samples == 1797
    assert source.stream.next_batch(4).shape == (4, 1, 64, 64)


@pytest.mark.parametrize("spec, modes, spread", [("ring", 8, 1.0), ("grid", 25, 4.0)])
def test_mixtures_sample_near_their_modes(spec, modes, spread):
    source = load_data(spec, resolution=16, seed=0)
    points = source.stream.next_batch(4000)
    assert points.shape == (4000, 2) and len(source.modes) == modes
    distance = torch.cdist(points, source.modes).min(dim=1).values
    assert (distance < 4 * source.mode_sigma).float().mean() > 0.99
    assert points.abs().max() < spread + 0.5
    assert len(torch.unique(torch.cdist(points, source.modes).argmin(dim=1))) == modes


def test_stream_resumes_at_the_same_position():
    a = load_data("digits", resolution=8, seed=3)
    for _ in range(120):  # crosses an epoch boundary (1797 samples / 16 per batch)
        a.stream.next_batch(16)
    b = load_data("digits", resolution=8, seed=3)
    b.stream.load_state_dict(a.stream.state_dict())
    assert torch.equal(a.stream.next_batch(50), b.stream.next_batch(50))


def test_epoch_visits_every_sample_once():
    source = load_data("digits", resolution=8, seed=1)
    seen = torch.cat([source.stream.next_batch(599) for _ in range(3)])  # 1797 = 3 x 599
    assert torch.equal(seen.sort(dim=0).values, ((source.stream.images.float() / 127.5) - 1).sort(dim=0).values)


def test_folder_source_reads_pngs_and_jpegs_recursively_with_class_labels(tmp_path):
    for i, (cls, suffix) in enumerate([("cats", "png"), ("cats", "jpg"), ("dogs", "png")]):
        (tmp_path / cls).mkdir(exist_ok=True)
        Image.fromarray(np.full((20, 30, 3), 40 * i, np.uint8)).save(tmp_path / cls / f"{i}.{suffix}")
    source = load_data(f"folder:{tmp_path}", resolution=16, seed=0)
    assert source.sample_shape == (3, 16, 16) and source.num_samples == 3
    assert source.labels.tolist() == [0, 0, 1]


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "nhw"])
def test_npz_source_accepts_common_layouts(tmp_path, layout):
    images = np.random.default_rng(0).integers(0, 256, (10, 12, 12, 3), dtype=np.uint8)
    array = {"nhwc": images, "nchw": images.transpose(0, 3, 1, 2), "nhw": images[..., 0]}[layout]
    np.savez(tmp_path / "d.npz", images=array, labels=np.arange(10))
    source = load_data(f"npz:{tmp_path / 'd.npz'}", resolution=12, seed=0)
    expected_channels = 1 if layout == "nhw" else 3
    assert source.sample_shape == (expected_channels, 12, 12)
    first = source.stream.images[0]
    reference = images[0, ..., 0] if layout == "nhw" else images[0].transpose(2, 0, 1)
    assert np.array_equal(first.squeeze(0).numpy() if layout == "nhw" else first.numpy(), reference)


def test_npz_float_images_in_minus_one_one(tmp_path):
    np.savez(tmp_path / "f.npz", images=np.linspace(-1, 1, 4 * 8 * 8, dtype=np.float32).reshape(4, 1, 8, 8))
    source = load_data(f"npz:{tmp_path / 'f.npz'}", resolution=8, seed=0)
    assert source.stream.images.min() == 0 and source.stream.images.max() == 255


def _write_idx(path, array, magic=b"\x00\x00\x08"):
    header = magic + bytes([array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(header + array.tobytes())


def test_idx_source_reads_gzipped_mnist_format_with_labels(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(5, dtype=np.uint8))
    source = load_data(f"idx:{tmp_path / 'train-images-idx3-ubyte.gz'}", resolution=16, seed=0)
    assert source.sample_shape == (1, 16, 16) and source.labels.tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("make, message", [
    (lambda p: "imagenet", "unknown --data"),
    (lambda p: f"folder:{p}", "no PNG or JPEG"),
    (lambda p: (p / "bad.png").write_bytes(b"not a png") and f"folder:{p}", "cannot read image"),
    (lambda p: _write_idx(p / "x.idx", np.zeros((2, 4, 4), np.uint8), b"\x00\x00\x09") or f"idx:{p / 'x.idx'}",
     "wrong magic number"),
    (lambda p: np.savez(p / "x.npz", images=np.zeros((3, 5), np.uint8)) or f"npz:{p / 'x.npz'}", "must be"),
    (lambda p: np.savez(p / "x.npz", images=np.full((2, 4, 4), 7.0)) or f"npz:{p / 'x.npz'}", "[0, 1] or [-1, 1]"),
])
def test_bad_data_is_one_clear_error(tmp_path, make, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_data(make(tmp_path), resolution=16, seed=0)


def _photos(folder, count=5, size=(30, 20)):
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(count)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{index}.png")
    return folder


def test_a_folder_is_decoded_once_into_its_cache_and_read_back_identical(tmp_path, monkeypatch):
    from ganforge.train.data import cache

    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    folder = _photos(tmp_path / "photos")
    first = load_data(f"folder:{folder}", resolution=16, seed=0)
    (built,) = (tmp_path / "cache").iterdir()
    manifest = __import__("json").loads((built / "manifest.json").read_text())
    assert manifest["images"] == 5 and manifest["shape"] == [5, 3, 16, 16] and manifest["fit"] == "crop"
    expected = np.stack([cache.decode(folder / f"{i}.png", "RGB", 16, "crop") for i in range(5)])
    assert np.array_equal(first.stream.images[torch.arange(5)].numpy(), expected)
    monkeypatch.setattr(cache, "decode", lambda *a: pytest.fail("decoded again"))
    again = load_data(f"folder:{folder}", resolution=16, seed=0)  # the cache, not the files
    assert torch.equal(again.stream.images[torch.tensor([4, 0, 4])], first.stream.images[torch.tensor([4, 0, 4])])
    assert torch.equal(again.stream.next_batch(7), first.stream.next_batch(7))


def test_an_edited_folder_or_another_size_or_fit_gets_its_own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    folder = _photos(tmp_path / "photos")
    load_data(f"folder:{folder}", resolution=16, seed=0)
    load_data(f"folder:{folder}", resolution=8, seed=0)
    load_data(f"folder:{folder}", resolution=8, seed=0, fit="pad")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "new.png")
    assert load_data(f"folder:{folder}", resolution=16, seed=0).num_samples == 6
    assert len(list((tmp_path / "cache").iterdir())) == 4


def test_fit_crops_the_centre_or_pads_with_black(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "wide").mkdir()
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 255  # a white centre square between black sides
    Image.fromarray(wide).save(tmp_path / "wide" / "a.png")
    crop = load_data(f"folder:{tmp_path / 'wide'}", resolution=10, seed=0).stream.images[0]
    pad = load_data(f"folder:{tmp_path / 'wide'}", resolution=30, seed=0, fit="pad").stream.images[0]
    assert crop.min() >= 250  # only the white square is left
    assert pad[:, :10].max() == 0 and pad[:, 20:].max() == 0 and pad[:, 12:18, 12:18].min() >= 250
    with pytest.raises(UserError, match="not a folder"):
        load_data("digits", resolution=16, seed=0, fit="pad")


def test_an_interrupted_cache_build_leaves_nothing_half_written(tmp_path, monkeypatch):
    from ganforge.train.data import cache

    monkeypatch.setenv("GANFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "CHUNK", 2)
    folder = _photos(tmp_path / "photos")
    real, calls = cache.decode, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(cache, "decode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_data(f"folder:{folder}", resolution=16, seed=0)
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()] == [".lock"]  # the empty build lock
    monkeypatch.setattr(cache, "decode", real)
    assert load_data(f"folder:{folder}", resolution=16, seed=0).num_samples == 5


def _load_at_once(folder: str, cache: str, log: str, barrier) -> list:
    """A process of its own (torchrun's ranks): loads ``folder`` once every process is ready, noting each build."""
    import os

    from ganforge.train.data import cache as cache_module

    os.environ["GANFORGE_CACHE"] = cache
    build = cache_module._build

    def noted(*args, **kwargs):
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return build(*args, **kwargs)

    cache_module._build = noted
    barrier.wait()
    return load_data(f"folder:{folder}", resolution=16, seed=0, quiet=True).stream.images[torch.arange(40)].tolist()


def test_processes_starting_on_one_folder_at_once_build_its_cache_once(tmp_path):
    import multiprocessing

    folder, log = _photos(tmp_path / "photos", count=40, size=(96, 96)), tmp_path / "builds.txt"
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(3)
    with context.Pool(3) as pool:
        results = pool.starmap(_load_at_once, [(str(folder), str(tmp_path / "cache"), str(log), barrier)] * 3)
    assert len(log.read_text().split()) == 1  # one process built it, the others waited and read it
    assert results[0] == results[1] == results[2]


def test_mirror_adds_the_flipped_images_and_resumes_exactly():
    plain = load_data("digits", resolution=8, seed=2)
    mirrored = load_data("digits", resolution=8, seed=2, mirror=True)
    n = plain.num_samples
    epoch = torch.cat([mirrored.stream.next_batch(100) for _ in range(2 * n // 100)] +
                      [mirrored.stream.next_batch(2 * n % 100)])
    stored = (plain.stream.images.float() / 127.5) - 1
    expected = torch.cat([stored, stored.flip(-1)])
    assert torch.equal(epoch.sort(dim=0).values, expected.sort(dim=0).values)  # each image and its mirror, once
    state = mirrored.stream.state_dict()
    ahead = mirrored.stream.next_batch(50)
    mirrored.stream.load_state_dict(state)
    assert torch.equal(mirrored.stream.next_batch(50), ahead)
    images, labels = mirrored.stream.next_labelled_batch(64)
    digits = plain.stream.images.float() / 127.5 - 1
    for image, label in zip(images, labels):  # a flipped image keeps its own label
        match = ((digits == image).flatten(1).all(1) | (digits.flip(-1) == image).flatten(1).all(1)).nonzero()
        assert label in plain.labels[match.flatten()]
    with pytest.raises(UserError, match="--mirror"):
        load_data("stacked-digits", resolution=16, seed=0, mirror=True)


def test_a_process_holding_a_folder_cache_exits_cleanly(tmp_path):
    """The cache's file is closed with its object, also when the interpreter shuts down holding it."""
    import subprocess
    import sys

    folder = _photos(tmp_path / "photos")
    code = f"from ganforge.train.data import load_data; source = load_data('folder:{folder}', 16, 0)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**__import__("os").environ, "GANFORGE_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0 and "Exception ignored" not in done.stderr, done.stderr
