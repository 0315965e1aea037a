"""`ganforge sample --interpolate A:B[:C...] --frames N`: the generator's images along the path between seeds'
latents, as a strip PNG (a row per pair of seeds) and a video there and back (GIF, or MP4 by ``video``).

Each step goes from seed A's latent to seed B's by spherical interpolation (slerp: Gaussian latents keep their
norm on the way, where a straight line would pass through unlikely, too-short latents); the latent controls
(truncation, a chosen class) apply to every frame as to a sampled seed, so frame 0 is exactly seed A's image.

    frames = interpolate(InterpolateConfig(model="runs/00000-digits-dcgan", seeds=(3, 17, 42), out="walk"))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ganforge.errors import UserError
from ganforge.images import VIDEO_FORMATS, image_grid, save_png, save_video, to_uint8
from ganforge.latents import LatentControls, latents_for_seeds


@dataclass(frozen=True)
class InterpolateConfig:
    model: str
    seeds: tuple[int, ...]
    out: str
    frames: int = 16  # per pair of seeds
    backend: str = "auto"
    precision: str | None = None
    device: str = "cpu"
    checkpoint: str | None = None
    truncation: float = 1.0
    classes: tuple[int, ...] | None = None
    fps: float = 12.0
    video: str = "gif"  # or mp4

    def __post_init__(self) -> None:
        if len(self.seeds) < 2:
            raise UserError("--interpolate needs two or more seeds, e.g. 3:17 or 3:17:42")
        if not 2 <= self.frames <= 1000:
            raise UserError(f"--frames must be between 2 and 1000, got {self.frames}")
        if self.video not in VIDEO_FORMATS:
            raise UserError(f"unknown --video {self.video!r} (choose from {', '.join(VIDEO_FORMATS)})")
        LatentControls(self.truncation)


def slerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Spherical interpolation between latents a and b [z_dim] at fractions t [n] -> float32 [n, z_dim]; t = 0 and
    t = 1 give a and b exactly."""
    a64, b64, t = a.astype(np.float64), b.astype(np.float64), np.asarray(t, dtype=np.float64)[:, None]
    cosine = np.dot(a64, b64) / (np.linalg.norm(a64) * np.linalg.norm(b64))
    omega = np.arccos(np.clip(cosine, -1.0, 1.0))
    if omega < 1e-6:  # (nearly) the same direction: a straight line is the same path
        path = (1 - t) * a64 + t * b64
    else:
        path = (np.sin((1 - t) * omega) * a64 + np.sin(t * omega) * b64) / np.sin(omega)
    path = path.astype(np.float32)
    path[t[:, 0] == 0], path[t[:, 0] == 1] = a, b
    return path


def path_latents(seeds: tuple[int, ...], frames: int, z_dim: int, controls: LatentControls | None) -> np.ndarray:
    """[(len(seeds) - 1) * frames + 1, z_dim]: ``frames`` steps from each seed towards the next, then the last."""
    ends = latents_for_seeds(seeds, z_dim)
    steps = np.arange(frames) / frames
    path = np.concatenate([slerp(ends[i], ends[i + 1], steps) for i in range(len(seeds) - 1)] + [ends[-1:]])
    return controls.apply(path) if controls is not None else path


def interpolate(config: InterpolateConfig) -> tuple[Path, Path]:
    """Writes OUT/interpolation.png and OUT/interpolation.gif (or .mp4); returns their paths."""
    from ganforge.export.model_source import resolve_model
    from ganforge.serve.runtime.auto import backend_file
    from ganforge.serve.runtime.latent_space import LatentSpace
    from ganforge.serve.runtime.runners import open_runner

    count = (len(config.seeds) - 1) * config.frames + 1
    backend, precision, path = backend_file(resolve_model(config.model, config.checkpoint), config.backend,
                                            config.precision, config.device, images=count)
    with open_runner(backend, path, config.device, precision) as runner:
        if len(runner.info.output_shape) != 3:
            raise UserError("--interpolate is for image models; this one makes 2D points")
        space = LatentSpace.of(runner.info)
        z = path_latents(config.seeds, config.frames, space.z_dim, space.controls(config.truncation, config.classes))
        step = runner.info.max_batch
        images = to_uint8(np.concatenate([runner.infer(z[i : i + step]) for i in range(0, len(z), step)]))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [images[i * config.frames : (i + 1) * config.frames + 1] for i in range(len(config.seeds) - 1)]
    strip = np.concatenate([image_grid(row, columns=config.frames + 1) for row in rows], axis=0)
    save_png(strip, out / "interpolation.png")
    frames = np.transpose(images, (0, 2, 3, 1))
    video = out / f"interpolation.{config.video}"
    save_video(np.concatenate([frames, frames[::-1][1:-1]]), video, config.fps,
               scale=max(1, 128 // frames.shape[1]))  # there and back, so the loop has no jump
    return out / "interpolation.png", video
