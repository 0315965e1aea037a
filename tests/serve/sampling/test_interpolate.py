import numpy as np
import pytest
from PIL import Image

from ganforge.errors import UserError
from ganforge.latents import LatentControls, latents_for_seeds
from ganforge.serve.sampling.interpolate import InterpolateConfig, interpolate, path_latents, slerp


def test_slerp_starts_and_ends_on_the_seeds_and_keeps_the_norm_on_the_way():
    a, b = latents_for_seeds([3, 17], 64)
    path = slerp(a, b, np.linspace(0, 1, 9))
    assert np.array_equal(path[0], a) and np.array_equal(path[-1], b)
    norms = np.linalg.norm(path, axis=1)
    assert norms.min() > 0.9 * min(np.linalg.norm(a), np.linalg.norm(b))  # a straight line would sag to ~0.7


def test_each_frame_takes_the_controls_as_a_sampled_seed_does():
    controls = LatentControls(0.5, 1, ((-0.2, 0.3),))
    z = path_latents((3, 17, 42), 4, 8, controls)
    assert z.shape == (9, 8)
    assert np.array_equal(z[[0, 4, 8]], latents_for_seeds([3, 17, 42], 8, controls))
    assert ((z[:, 0] > np.float32(-0.2)) & (z[:, 0] <= np.float32(0.3))).all()


def test_interpolation_writes_a_strip_and_a_looping_gif_from_the_seeds_images(conditional_run, tmp_path):
    from ganforge.serve.sampling.sampler import SampleConfig, sample

    strip, gif = interpolate(InterpolateConfig(model=str(conditional_run), seeds=(3, 17, 42), frames=4,
                                               out=str(tmp_path / "walk"), backend="torch"))
    picture = np.asarray(Image.open(strip))
    assert picture.shape[1] == 5 * (16 + 2) + 2  # frames + 1 images per row, 2 px padding
    with Image.open(gif) as animation:
        assert animation.n_frames == 9 + 7  # there and back
    sample(SampleConfig(model=str(conditional_run), backend="torch", out=str(tmp_path / "s"), seeds=(3,),
                        quiet=True, format="png"))
    seed3 = np.asarray(Image.open(tmp_path / "s" / "shard-00000" / "seed0000000003.png"))
    assert np.array_equal(picture[2:18, 2:18], seed3)  # frame 0 is seed 3's own image


def test_interpolation_as_mp4_plays_every_frame_there_and_back(conditional_run, tmp_path):
    """Read back with PyAV's own decoder: H.264, the frames there and back, at 128 px (16 px images enlarged), and
    frame 0 close to seed 3's image (H.264 is lossy: within a few grey levels on average)."""
    import av

    strip, video = interpolate(InterpolateConfig(model=str(conditional_run), seeds=(3, 17, 42), frames=4,
                                                 out=str(tmp_path / "walk"), backend="torch", video="mp4"))
    assert video.name == "interpolation.mp4" and not (tmp_path / "walk" / "interpolation.gif").exists()
    with av.open(str(video)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 9 + 7 and frames[0].shape == (128, 128, 3)
    first = np.asarray(Image.open(strip))[2:18, 2:18].astype(float)  # seed 3's image, grey
    decoded = frames[0][::8, ::8, 0].astype(float)  # nearest-neighbour enlargement by 8, undone
    assert np.abs(decoded - first).mean() < 6


@pytest.mark.parametrize("changes, message", [({"seeds": (3,)}, "two or more seeds"),
                                              ({"frames": 1}, "--frames must be between"),
                                              ({"video": "avi"}, "unknown --video"),
                                              ({"truncation": 0.0}, "truncation psi")])
def test_what_cannot_be_interpolated_is_one_clear_error(changes, message):
    with pytest.raises(UserError, match=message):
        InterpolateConfig(**({"model": "m", "seeds": (1, 2), "out": "o"} | changes))
