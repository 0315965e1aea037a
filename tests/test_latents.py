import numpy as np
import pytest

from ganforge.errors import UserError
from ganforge.latents import latents_for_seeds, parse_seeds


def test_latents_do_not_depend_on_batching():
    whole = latents_for_seeds(range(10), 16)
    parts = np.concatenate([latents_for_seeds(range(0, 3), 16), latents_for_seeds(range(3, 10), 16)])
    assert whole.dtype == np.float32 and whole.shape == (10, 16)
    assert np.array_equal(whole, parts)
    assert np.array_equal(latents_for_seeds([7], 16)[0], whole[7])


def test_latents_are_the_documented_numpy_draw():
    expected = np.random.default_rng(42).standard_normal(8, dtype=np.float32)
    assert np.array_equal(latents_for_seeds([42], 8)[0], expected)
    assert abs(latents_for_seeds(range(2000), 8).std() - 1) < 0.05


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("1,5,9-11") == [1, 5, 9, 10, 11]
    for bad in ("x", "5-2", "", "-3"):
        with pytest.raises(UserError):
            parse_seeds(bad)


def test_default_controls_leave_the_latent_as_drawn_bit_for_bit():
    from ganforge.latents import LatentControls

    plain = latents_for_seeds(range(50), 16)
    assert latents_for_seeds(range(50), 16, LatentControls()).tobytes() == plain.tobytes()
    assert latents_for_seeds(range(50), 16, LatentControls(1.0, class_dims=2)).tobytes() == plain.tobytes()


def test_truncation_scales_all_but_the_class_coordinates():
    from ganforge.latents import LatentControls

    plain = latents_for_seeds(range(50), 16)
    truncated = latents_for_seeds(range(50), 16, LatentControls(0.5, class_dims=1))
    assert np.array_equal(truncated[:, 0], plain[:, 0])
    assert np.array_equal(truncated[:, 1:], plain[:, 1:] * np.float32(0.5))
    for psi in (0, -0.5, 1.5, float("nan")):
        with pytest.raises(UserError, match="truncation"):
            LatentControls(psi)


def test_a_chosen_class_moves_the_class_coordinate_inside_its_interval_keeping_its_rank():
    from ganforge.latents import LatentControls

    low, high = -0.25, 0.5
    plain = latents_for_seeds(range(500), 4)
    moved = latents_for_seeds(range(500), 4, LatentControls(1.0, 1, ((low, high),)))
    assert (moved[:, 0] > np.float32(low)).all() and (moved[:, 0] <= np.float32(high)).all()
    assert (np.argsort(moved[:, 0], kind="stable") == np.argsort(plain[:, 0], kind="stable")).all()
    assert np.array_equal(moved[:, 1:], plain[:, 1:])  # the rest of the seed is untouched
    edge = latents_for_seeds(range(500), 4, LatentControls(1.0, 1, ((-1e4, -3.0),)))  # the lowest class
    assert (edge[:, 0] <= np.float32(-3.0)).all()
