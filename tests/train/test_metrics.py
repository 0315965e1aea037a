import math

import torch

from ganforge.train.data.synthetic import RING_SIGMA, ring_modes
from ganforge.train.metrics import mode_coverage


def test_perfect_samples_capture_every_mode_with_zero_kl():
    modes = ring_modes()
    samples = modes.repeat(100, 1) + 0.5 * RING_SIGMA * torch.randn(800, 2)
    result = mode_coverage(samples, modes, RING_SIGMA)
    assert result["modes_captured"] == 8 and result["high_quality"] == 1.0
    assert abs(result["reverse_kl"]) < 1e-12


def test_collapsed_samples_count_one_mode_and_log_k_kl():
    modes = ring_modes()
    samples = torch.cat([modes[:1].repeat(50, 1), torch.zeros(50, 2)])  # half on mode 0, half at the centre
    result = mode_coverage(samples, modes, RING_SIGMA)
    assert result["modes_captured"] == 1 and result["high_quality"] == 0.5
    assert math.isclose(result["reverse_kl"], math.log(8))


def test_ring_has_eight_distinct_modes():
    modes = ring_modes()
    assert len(torch.unique(modes.round(decimals=6), dim=0)) == 8
    assert torch.allclose(modes.norm(dim=1), torch.ones(8))
