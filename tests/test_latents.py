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
