"""Phase flipping: restores one sign across CTF bands and keeps the microscope contrast."""

import numpy as np
import pandas as pd
import scipy.fft

from stasnake.tilt.ctf import ctf_2d
from stasnake.tilt.ctf_correct import defocus_from_imod, phase_flip_image, phase_flip_stack

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
