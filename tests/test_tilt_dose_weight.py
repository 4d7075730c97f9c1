"""Exposure weighting of a tilt series: Grant & Grigorieff attenuation per tilt, means kept."""

import numpy as np
import pytest
import scipy.fft

from stasnake.errors import InputError
from stasnake.tilt.dose_weight import dose_weight_stack, effective_exposure

APIX = 2.0
SHAPE = (64, 80)


def ne_300kv(k):
    return 0.245 * k**-1.665 + 2.81


def test_attenuation_matches_the_formula_at_several_frequencies():
    stack = np.random.default_rng(0).normal(size=(3, *SHAPE)).astype(np.float32) + 5.0
    pre = np.array([0.0, 10.0, 60.0])
    dose = np.array([3.0, 3.0, 3.0])
    out = dose_weight_stack(stack, APIX, pre, dose, reduction=0.2)
    ratio = scipy.fft.rfft2(out) / scipy.fft.rfft2(stack)
    for i in range(3):
        exposure = 0.8 * (pre[i] + dose[i])
        for ix in (4, 10, 20, 40):  # k = ix / (nx * pixel) on the x axis, up to Nyquist (0.25 / Å)
            k = ix / (SHAPE[1] * APIX)
            assert ratio[i, 0, ix].real == pytest.approx(np.exp(-exposure / (2 * ne_300kv(k))), rel=2e-3, abs=2e-5)
            assert abs(ratio[i, 0, ix].imag) < 1e-4
        iy = 8  # along y too: k = 8 / (64 * 2)
        assert ratio[i, iy, 0].real == pytest.approx(np.exp(-exposure / (2 * ne_300kv(iy / (SHAPE[0] * APIX)))), rel=2e-3)
    # later tilts are attenuated more; every image keeps its mean
    assert abs(ratio[2, 0, 20]) < abs(ratio[1, 0, 20]) < abs(ratio[0, 0, 20]) < 1
    assert np.allclose(out.mean(axis=(1, 2)), stack.mean(axis=(1, 2)), atol=1e-4)
    assert out.dtype == np.float32 and out.shape == stack.shape


def test_zero_exposure_is_identity():
    stack = np.random.default_rng(1).normal(size=(2, *SHAPE)).astype(np.float32)
    out = dose_weight_stack(stack, APIX, [0.0, 0.0], None)
    assert np.allclose(out, stack, atol=1e-5)
    assert np.allclose(dose_weight_stack(stack, APIX, [0.0, 0.0], [0.0, 0.0], reduction=0.0), stack, atol=1e-5)


def test_reduction_scales_the_end_of_tilt_exposure():
    assert effective_exposure([0.0, 9.0], [3.0, 3.0], 0.2) == pytest.approx([2.4, 9.6])
    assert effective_exposure([0.0, 9.0], 3.0, 0.0) == pytest.approx([3.0, 12.0])
    assert effective_exposure([0.0, 9.0], None, 0.5) == pytest.approx([0.0, 4.5])
    stack = np.random.default_rng(2).normal(size=(1, *SHAPE)).astype(np.float32)
    # reduction 0.2 of (pre 27 + dose 3) = full weighting at exposure 24
    assert np.allclose(dose_weight_stack(stack, APIX, [27.0], [3.0], reduction=0.2),
                       dose_weight_stack(stack, APIX, [24.0], None, reduction=0.0), atol=1e-6)  # fmt: skip
    with pytest.raises(InputError, match=r"pre_exposure_e_per_A2\[1\]"):
        effective_exposure([0.0, -1.0], 3.0)
    with pytest.raises(InputError, match="reduction"):
        effective_exposure([0.0], 3.0, reduction=1.0)
    with pytest.raises(ValueError, match="pre-exposures"):
        dose_weight_stack(stack, APIX, [1.0, 2.0], None)
