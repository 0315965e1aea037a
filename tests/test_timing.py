import time

import numpy as np
import pytest

from ganforge.timing import measure, percentiles, windows_agree


def test_percentiles_against_known_data():
    values = list(range(1, 101))  # 1..100
    result = percentiles(values)
    assert result["p50"] == pytest.approx(50.5)
    assert result["p90"] == pytest.approx(90.1)
    assert result["p99"] == pytest.approx(99.01)
    assert (result["min"], result["max"], result["mean"]) == (1, 100, 50.5)
    assert percentiles([7.0])["p99"] == 7.0
    rng = np.random.default_rng(0).exponential(size=100_001)
    assert percentiles(rng)["p50"] == pytest.approx(np.log(2), rel=0.02)  # exponential median = ln 2


def test_windows_agree_within_ten_percent():
    assert not windows_agree([100, 100])
    assert windows_agree([50, 100, 105, 109])
    assert not windows_agree([100, 105, 112])


def test_measure_times_a_known_delay():
    result = measure(lambda: time.sleep(0.004), items_per_call=2, min_duration=0.3, warmup=0.02)
    assert 300 < result.items_per_second < 520  # 2 items per ~4.1 ms call
    assert min(result.latencies_s) >= 0.004 and len(result.window_rates) >= 3
