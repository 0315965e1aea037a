import numpy as np
import pytest
import torch

from ganforge.images import image_grid, to_uint8


def test_to_uint8_scales_clips_and_rounds_half_away_from_zero():
    x = np.array([-1.0, 1.0, 0.0, -2.0, 3.0, np.nan, 1 / 255 - 1, 3 / 255 - 1], dtype=np.float32)
    # 0 -> 127.5 rounds up to 128; 1/255 - 1 -> 0.5 -> 1; 3/255 - 1 -> 1.5 -> 2
    assert to_uint8(x).tolist() == [0, 255, 128, 0, 255, 0, 1, 2]


def test_to_uint8_accepts_torch_and_keeps_shape():
    images = torch.rand(2, 3, 4, 5) * 2 - 1
    out = to_uint8(images)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4, 5)
    reference = np.floor(np.clip((images.numpy().astype(np.float64) + 1) * 127.5, 0, 255) + 0.5)
    assert np.array_equal(out, reference.astype(np.uint8))


def test_image_grid_layout():
    images = np.stack([np.full((1, 2, 2), i, np.uint8) for i in range(5)])
    grid = image_grid(images, columns=3, padding=1)
    assert grid.shape == (2 * 3 + 1, 3 * 3 + 1, 1)
    assert grid[1, 1, 0] == 0 and grid[1, 4, 0] == 1 and grid[4, 1, 0] == 3 and grid[4, 7, 0] == 0


def _hard_batches(seed: int) -> list[np.ndarray]:
    """Float NCHW batches that test a uint8 conversion: random values past [-1, 1] with NaN, infs and the ends, one
    channel of them, and every rounding boundary with its neighbours on both sides."""
    images = np.random.default_rng(seed).uniform(-1.2, 1.2, (8, 3, 16, 16)).astype(np.float32)
    images[0, 0, 0, :6] = [np.nan, np.inf, -np.inf, -1.0, 1.0, 0.0]
    ramp = (np.arange(4 * 256, dtype=np.float32) / 511.5 - 1).reshape(1, 4, 16, 16)  # every rounding boundary
    return [images, images[:, :1], ramp, np.nextafter(ramp, 2).astype(np.float32),
            np.nextafter(ramp, -2).astype(np.float32)]


def test_the_fast_nhwc_conversion_gives_the_same_bytes():
    from ganforge.images import nchw_to_nhwc, to_uint8, to_uint8_nhwc

    for batch in _hard_batches(0):
        assert np.array_equal(to_uint8_nhwc(batch), nchw_to_nhwc(to_uint8(batch)))


def test_the_torch_conversion_gives_the_same_bytes_as_numpy():
    """What a GPU runner converts on the device must be the bytes `ganforge sample` writes from the host."""
    from ganforge.images import to_uint8_nhwc, to_uint8_nhwc_torch

    batches = _hard_batches(1)
    for batch in batches:
        converted = to_uint8_nhwc_torch(torch.from_numpy(batch))
        assert converted.dtype == torch.uint8 and converted.is_contiguous()
        assert np.array_equal(converted.numpy(), to_uint8_nhwc(batch))
    half = torch.from_numpy(batches[0]).to(torch.bfloat16)  # a bf16 runner's output, as infer() would widen it
    assert np.array_equal(to_uint8_nhwc_torch(half).numpy(), to_uint8_nhwc(half.float().numpy()))


@pytest.mark.parametrize("shape", [(64, 64, 3), (16, 16, 1), (3, 5, 3), (7, 2, 4), (1, 1, 2)])
def test_png_bytes_decode_to_the_same_pixels_in_pillow(shape):
    """ganforge's unfiltered PNG writer: any decoder reads back the exact pixels (Pillow here; webdataset and the
    datasets library read the sampler's shards in their own tests), grey, grey + alpha, RGB and RGBA."""
    import io

    from PIL import Image

    from ganforge.images import encode_image, png_bytes

    image = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    for data in (png_bytes(image, 1), png_bytes(image), encode_image(image, "PNG", compress_level=1)):
        with Image.open(io.BytesIO(data)) as decoded:
            decoded.load()
            assert np.array_equal(np.asarray(decoded).reshape(shape), image)
    flat = np.zeros((32, 32, 3), dtype=np.uint8)
    assert len(png_bytes(flat, 0)) > 3000 > 100 > len(png_bytes(flat, 9))  # the level reaches zlib
