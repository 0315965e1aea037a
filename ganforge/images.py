"""Images to bytes: the one mapping from generator output to uint8, used by grids, sampler, server and tests."""

from __future__ import annotations

import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from ganforge.errors import UserError
from ganforge.files import atomic_write, atomic_write_bytes


def to_uint8(images) -> np.ndarray:
    """float [-1, 1] (numpy or torch, any shape) -> uint8 [0, 255]: scale, clip, round half away from zero.

    NaN maps to 0 so that a broken model gives black pixels rather than undefined bytes.
    """
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    values = np.asarray(images, dtype=np.float32) * np.float32(127.5)  # a new buffer, then in place
    values += np.float32(128.0)  # (x + 1) * 127.5 + 0.5
    np.fmax(values, np.float32(0.5), out=values)  # fmax/fmin turn NaN into the bound: NaN -> 0
    np.fmin(values, np.float32(255.5), out=values)
    # every value is now >= 0.5, so truncation is floor(v + 0.5): round half away from zero of the clipped value
    return values.astype(np.uint8)


CACHE_VALUES = 1 << 18  # float32 values converted per pass (1 MB): each slice's passes stay in the CPU's cache


def to_uint8_nhwc(images: np.ndarray) -> np.ndarray:
    """``nchw_to_nhwc(to_uint8(images))`` for float NCHW batches, byte for byte, at about 1.7x the speed of the two
    (the sampler's and server's hot path, 0.7 ms for 64 images at 64 px here): the arithmetic and the cast run on
    contiguous NCHW slices of about a megabyte (so that their several passes stay in the cache: a whole batch at
    256 px is 50 MB), then each channel is copied into its NHWC slots (NumPy's generic transposed copy is several
    times slower than these per-channel strided copies). NumPy on purpose: a torch version ran on more threads but
    its thread pool fought the inference runtime's (OpenVINO's TBB) for the cores."""
    n, c, h, w = images.shape
    out = np.empty((n, h, w, c), dtype=np.uint8)
    step = max(1, CACHE_VALUES // (c * h * w))
    for start in range(0, n, step):
        _into_nhwc(images[start : start + step], out[start : start + step])
    return out


def _into_nhwc(images: np.ndarray, out: np.ndarray) -> None:
    n, c, h, w = images.shape
    values = np.multiply(images, np.float32(127.5), dtype=np.float32)
    values += np.float32(128.0)
    if np.isnan(values).any():  # NaN -> 0 as to_uint8 makes it (clip would keep NaN)
        np.fmax(values, np.float32(0.5), out=values)
    np.clip(values, np.float32(0.5), np.float32(255.5), out=values)
    planar = values.astype(np.uint8).reshape(n, c, h * w)  # truncation, as to_uint8
    pixels = out.reshape(n, h * w, c)
    for channel in range(c):
        pixels[:, :, channel] = planar[:, channel]


def to_uint8_nhwc_torch(images):
    """``to_uint8_nhwc`` on a torch tensor where it lies (a GPU: a quarter of the bytes then cross to the host),
    byte for byte: the same float32 multiply and add, each rounded on its own (separate kernels, so no fused
    multiply-add), NaN to the lower bound, the clip, and truncation."""
    import torch

    values = images.float() * 127.5
    values += 128.0
    values = torch.fmax(values, torch.tensor(0.5, device=values.device))  # NaN -> 0.5 (then 0), as to_uint8
    values.clamp_(0.5, 255.5)
    return values.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def nchw_to_nhwc(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))


def image_grid(images: np.ndarray, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """uint8 [N, C, H, W] -> one uint8 [rows*(H+p)+p, cols*(W+p)+p, C] picture."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.zeros((rows * (h + padding) + padding, columns * (w + padding) + padding, c), dtype=np.uint8)
    for i, image in enumerate(nchw_to_nhwc(images)):
        top, left = padding + (i // columns) * (h + padding), padding + (i % columns) * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


def picture(array: np.ndarray):
    """uint8 [H, W, C] (C = 1 or 3) -> a Pillow image (grey for one channel)."""
    from PIL import Image

    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def encode_image(array: np.ndarray, image_format: str = "PNG", **options) -> bytes:
    """uint8 [H, W, C] -> the bytes of an image file in ``image_format``: PNG by ``png_bytes`` (zlib level 6 unless
    ``compress_level`` says otherwise), any other format by Pillow with its ``options``."""
    if image_format == "PNG" and set(options) <= {"compress_level"}:
        return png_bytes(array, options.get("compress_level", 6))
    buffer = io.BytesIO()
    picture(array).save(buffer, format=image_format, **options)
    return buffer.getvalue()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> grey, grey + alpha, RGB, RGBA


def png_bytes(array: np.ndarray, level: int = 6) -> bytes:
    """uint8 [H, W, C] -> a PNG file with every row unfiltered (filter type 0), deflated by zlib at ``level``.

    What the sampler writes millions of. Pillow tries its adaptive row filters on every row: on generated 64 px
    samples that took 466 us an image against 196 us here, and gave larger files (10,966 against 10,288 bytes: a
    GAN's fine texture does not predict from its neighbours); OpenCV's unfiltered encode is the same bytes' worth
    at 174 us. zlib releases the GIL, so encoder threads compress in parallel. Decoders read it as any PNG (tests
    decode it with Pillow)."""
    height, width, channels = array.shape
    rows = np.zeros((height, 1 + width * channels), dtype=np.uint8)  # each row: filter type 0, then its bytes
    rows[:, 1:] = array.reshape(height, width * channels)
    header = struct.pack(">IIBBBBB", width, height, 8, PNG_COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join([PNG_SIGNATURE, _png_chunk(b"IHDR", header),
                     _png_chunk(b"IDAT", zlib.compress(rows.data, level)), _png_chunk(b"IEND", b"")])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def save_png(array: np.ndarray, path: Path) -> None:
    """uint8 [H, W, C] (C = 1 or 3) -> PNG, written atomically."""
    atomic_write_bytes(Path(path), png_bytes(array))


VIDEO_FORMATS = ("gif", "mp4")


def save_video(frames: np.ndarray, path: Path, fps: float = 12.0, scale: int = 1) -> None:
    """uint8 [N, H, W, C] -> an animation, written atomically, in the format of ``path``'s suffix: ``.gif``
    (Pillow's encoder; colours quantized to GIF's 256, it loops) or ``.mp4`` (H.264 through PyAV, which ships its
    FFmpeg: full colour, a tenth of the GIF's size, it plays once). ``scale`` enlarges small images,
    nearest-neighbour."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in VIDEO_FORMATS:
        raise UserError(f"cannot write a video as {path}: use a .gif or .mp4 name")
    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    (_save_gif if suffix == "gif" else _save_mp4)(frames, Path(path), fps)


def _save_gif(frames: np.ndarray, path: Path, fps: float) -> None:
    pictures = [picture(frame) for frame in frames]
    duration = max(20, int(round(1000 / fps)))
    atomic_write(path, lambda handle: pictures[0].save(handle, format="GIF", save_all=True,
                                                       append_images=pictures[1:], duration=duration, loop=0))


def _save_mp4(frames: np.ndarray, path: Path, fps: float) -> None:
    try:
        import av
    except ImportError:
        raise UserError("writing MP4 needs PyAV: pip install 'ganforge[video]' (or write a .gif)") from None
    from fractions import Fraction

    if frames.shape[-1] == 1:
        frames = frames.repeat(3, axis=-1)
    # H.264 in yuv420p halves the colour resolution, so both sides must be even: repeat the last row or column
    frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge")

    def write(handle) -> None:
        with av.open(handle, mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
            stream.options = {"crf": "18"}  # visually lossless for these small pictures
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
            container.mux(stream.encode())  # flush the encoder

    atomic_write(path, write)
