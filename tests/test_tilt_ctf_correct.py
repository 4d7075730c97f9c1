"""Phase flipping: restores one sign across CTF bands and keeps the microscope contrast."""

import numpy as np
import pandas as pd
import pytest
import scipy.fft

from stasnake.tilt.ctf import ctf_2d
from stasnake.tilt.ctf_correct import (
    defocus_from_imod,
    delocalization_px,
    phase_flip_image,
    phase_flip_stack,
    phase_flip_stack_strips,
    phase_flip_strips,
    strip_width_for_tolerance,
)

APIX, DF = 5.4, 30000.0


def blurred_object(rng, shape=(128, 128)):
    obj = np.zeros(shape)
    obj[rng.integers(20, 108, 30), rng.integers(20, 108, 30)] = 1.0
    return obj


def test_phase_flip_gives_one_sign_per_band_and_dark_protein():
    obj = blurred_object(np.random.default_rng(0))
    ctf = ctf_2d(obj.shape, APIX, DF, DF, 0.0)
    image = scipy.fft.irfft2(scipy.fft.rfft2(obj) * ctf, s=obj.shape)
    flipped = phase_flip_image(image, APIX, DF, DF, 0.0)
    spectrum_ratio = scipy.fft.rfft2(flipped) / np.where(np.abs(scipy.fft.rfft2(obj)) > 1e-9, scipy.fft.rfft2(obj), 1)
    strong = np.abs(ctf) > 0.2
    # after flipping, the transfer is -|CTF| everywhere: protein stays dark in every band
    assert np.all(spectrum_ratio.real[strong] < 0)
    assert np.corrcoef(flipped.ravel(), -obj.ravel())[0, 1] > np.corrcoef(image.ravel(), -obj.ravel())[0, 1] + 0.2


def test_phase_flip_stack_and_imod_defocus_rows():
    table = pd.DataFrame({"view_start": [1, 2], "view_end": [1, 3], "tilt_start_deg": [-3, 0],
                          "tilt_end_deg": [-3, 3], "defocus1_nm": [3000.0, 3100.0],
                          "defocus2_nm": [2950.0, np.nan], "astigmatism_angle_deg": [10.0, np.nan]})  # fmt: skip
    per_view = defocus_from_imod(table)
    assert per_view.view.tolist() == [0, 1, 2]
    assert per_view.defocus_u_angstrom.tolist() == [30000.0, 31000.0, 31000.0]
    assert per_view.defocus_v_angstrom.tolist() == [29500.0, 31000.0, 31000.0]
    stack = np.random.default_rng(1).normal(size=(3, 32, 32)).astype(np.float32)
    out = phase_flip_stack(stack, APIX, per_view)
    assert out.shape == stack.shape and out.dtype == np.float32
    assert np.allclose(out.mean(axis=(1, 2)), stack.mean(axis=(1, 2)), atol=1e-5)


def test_strip_flip_at_zero_tilt_equals_whole_image_flip():
    image = np.random.default_rng(2).normal(size=(64, 96)).astype(np.float32)
    whole = phase_flip_image(image, APIX, DF, DF - 400.0, 30.0)
    assert np.array_equal(phase_flip_strips(image, APIX, DF, DF - 400.0, 30.0, 0.0), whole)
    # forced narrow strips at zero tilt: every strip has the same defocus, so the exact mode is unchanged
    assert np.allclose(phase_flip_strips(image, APIX, DF, DF - 400.0, 30.0, 0.0, strip_width_px=10), whole, atol=1e-5)


def test_strip_width_follows_the_defocus_tolerance():
    # 200 Å / (2.7 Å * tan 60°) = 42.8 px; tiny tilts give one strip (the image width)
    assert strip_width_for_tolerance(60.0, 2.7, 384, 200.0) == 42
    assert strip_width_for_tolerance(-60.0, 2.7, 384, 200.0) == 42
    assert strip_width_for_tolerance(0.0, 2.7, 384, 200.0) == 384
    assert strip_width_for_tolerance(3.0, 5.4, 192, 200.0) == 192
    # delocalisation lambda dF k_max / pixel: 0.01969 Å * 30000 Å * (1 / 10.8 Å) / 5.4 Å = 10.1 px
    assert delocalization_px(5.4, 30000.0) == pytest.approx(10.13, abs=0.05)


def _points_with_local_defocus(tilt_deg, apix=2.7, df=30000.0, shape=(96, 384)):
    """Point features at several U, each imaged with the CTF of its mid-plane defocus dF + U tan(t) pixel."""
    ny, nx = shape
    rng = np.random.default_rng(0)
    truth = np.zeros(shape)
    image = np.zeros(shape)
    slope = np.tan(np.radians(tilt_deg)) * apix
    for u in np.linspace(-0.45 * nx, 0.45 * nx, 12).round().astype(int):
        point = np.zeros(shape)
        point[rng.integers(16, ny - 16), nx // 2 + u] = 1.0
        truth += point
        ctf = ctf_2d(shape, apix, df + u * slope, df + u * slope, 0.0)
        image += scipy.fft.irfft2(scipy.fft.rfft2(point) * ctf, s=shape)
    return truth, image


def test_strip_flip_follows_the_defocus_gradient_with_the_documented_sign():
    apix, df, tilt = 2.7, 30000.0, 60.0
    truth, image = _points_with_local_defocus(tilt, apix, df)

    def corr(a):  # protein stays dark after flipping
        return np.corrcoef(a.ravel(), -truth.ravel())[0, 1]

    strips = corr(phase_flip_strips(image, apix, df, df, 0.0, tilt))
    whole = corr(phase_flip_image(image, apix, df, df, 0.0))
    wrong_sign = corr(phase_flip_strips(image, apix, df, df, 0.0, -tilt))
    # measured: strips 0.82, whole image 0.64, wrong gradient sign 0.31, unflipped 0.01
    assert strips > whole + 0.1
    assert strips > wrong_sign + 0.3
    assert strips > 0.75


def test_windowed_strip_flip_approximates_the_exact_one_and_stack_wrapper():
    truth, image = _points_with_local_defocus(60.0)
    exact = phase_flip_strips(image, 2.7, 30000.0, 30000.0, 0.0, 60.0)
    windowed = phase_flip_strips(image, 2.7, 30000.0, 30000.0, 0.0, 60.0, window_px=300)
    assert np.corrcoef(windowed.ravel(), exact.ravel())[0, 1] > 0.9
    stack = np.stack([image, image]).astype(np.float32)
    table = pd.DataFrame({"defocus_u_angstrom": [30000.0] * 2, "defocus_v_angstrom": [30000.0] * 2,
                          "astigmatism_angle_deg": [0.0] * 2})  # fmt: skip
    out = phase_flip_stack_strips(stack, 2.7, table, [60.0, 0.0])
    assert out.shape == stack.shape and out.dtype == np.float32
    assert np.allclose(out[0], exact, atol=1e-5)
    assert np.allclose(out[1], phase_flip_image(image, 2.7, 30000.0, 30000.0, 0.0), atol=1e-5)
    assert np.allclose(out.mean(axis=(1, 2)), stack.mean(axis=(1, 2)), atol=1e-5)


def test_imod_defocus_round_trip_keeps_the_ctffind_angle():
    """CTFFIND -> IMOD (+90 deg, defocus1 = U) -> back gives the same astigmatism."""
    from stasnake.io.ctffind import ctf_table_to_imod_defocus

    ctf = pd.DataFrame({"tilt_angle_deg": [-3.0, 0.0, 3.0], "defocus_u_angstrom": [30000.0, 31000.0, 32000.0],
                        "defocus_v_angstrom": [29500.0, 30400.0, 31800.0], "astigmatism_angle_deg": [10.0, 95.0, 170.0]})  # fmt: skip
    imod = ctf_table_to_imod_defocus(ctf)
    assert imod.astigmatism_angle_deg.tolist() == [100.0, 5.0, 80.0]
    back = defocus_from_imod(imod)
    assert np.allclose(back.astigmatism_angle_deg, ctf.astigmatism_angle_deg)
    assert np.allclose(back.defocus_u_angstrom, ctf.defocus_u_angstrom)
