import numpy as np
import pytest

from stasnake.tilt.ctf import ctf_2d, electron_wavelength_angstrom


def test_wavelength_300kv():
    assert electron_wavelength_angstrom(300) == pytest.approx(0.01969, abs=1e-5)
    assert electron_wavelength_angstrom(200) == pytest.approx(0.02508, abs=1e-5)


def test_zeros_of_a_cut_at_analytic_positions():
    px, df, cs_mm = 1.0, 20000.0, 2.7
    n = 8192
    c = ctf_2d((2, n), px, df, df, 0.0, cs_mm=cs_mm, amplitude_contrast=0.0)[0]  # ky = 0 cut
    k = np.fft.rfftfreq(n, d=px)
    crossings = k[:-1][np.sign(c[:-1]) != np.sign(c[1:])][1:6]  # skip the zero at k = 0
    lam, cs = electron_wavelength_angstrom(300), cs_mm * 1e7
    # pi lam df k^2 - pi/2 cs lam^3 k^4 = n pi  ->  quadratic in k^2
    a, b = 0.5 * cs * lam**3, -lam * df
    expected = [np.sqrt((-b - np.sqrt(b * b - 4 * a * m)) / (2 * a)) for m in range(1, 6)]
    np.testing.assert_allclose(crossings, expected, atol=1.0 / n)


def test_amplitude_contrast_and_sign_at_low_frequency():
    c = ctf_2d((64, 64), 2.0, 30000, 30000, 0, amplitude_contrast=0.1)
    assert c[0, 0] == pytest.approx(-0.1)
    assert c.shape == (64, 33)
    assert ctf_2d((64, 64), 2.0, 30000, 30000, 0, rfft=False).shape == (64, 64)


@pytest.mark.parametrize("angle, along_u", [(45.0, (1, 1)), (-45.0, (1, -1)), (90.0, (0, 1)), (0.0, (1, 0))])
def test_astigmatism_angle_is_the_u_axis_from_x_counterclockwise(angle, along_u):
    shape, px, du, dv = (128, 128), 2.0, 25000.0, 15000.0
    full = ctf_2d(shape, px, du, dv, angle, rfft=False)
    iso_u = ctf_2d(shape, px, du, du, 0.0, rfft=False)
    iso_v = ctf_2d(shape, px, dv, dv, 0.0, rfft=False)
    ix, iy = along_u
    for m in (5, 11, 17):
        assert full[m * iy, m * ix] == pytest.approx(iso_u[m * iy, m * ix], abs=1e-9)
        # perpendicular direction (rotated +90 degrees): defocus V
        assert full[m * ix, -m * iy] == pytest.approx(iso_v[m * ix, -m * iy], abs=1e-9)
