import numpy as np
import pytest

from stasnake.tilt.dose import critical_exposure, dose_filter


def test_value_at_known_frequency():
    f = dose_filter((100, 100), 1.0, 20.0)  # index 10 on the x axis: k = 0.1 / Å
    ne = 0.245 * 0.1**-1.665 + 2.81
    assert f[0, 10] == pytest.approx(np.exp(-20.0 / (2 * ne)))
    assert f[0, 0] == 1.0
    assert critical_exposure(0.1, voltage_kv=200) == pytest.approx(0.8 * ne)


def test_monotone_in_exposure_and_frequency():
    cuts = [dose_filter((64, 64), 2.0, pre, 3.0)[0] for pre in (0.0, 3.0, 30.0, 100.0)]
    for a, b in zip(cuts, cuts[1:], strict=False):
        assert np.all(b[1:] < a[1:])
    for c in cuts:
        assert np.all(np.diff(c) < 0)


def test_exposure_average_lies_between_start_and_end():
    mean = dose_filter((32, 32), 2.0, 10.0, 3.0)
    assert np.all(mean <= dose_filter((32, 32), 2.0, 10.0) + 1e-12)
    assert np.all(mean >= dose_filter((32, 32), 2.0, 13.0) - 1e-12)
