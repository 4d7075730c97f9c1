"""Per-shell correlation of a tomogram with the truth phantom."""

import numpy as np
import pytest
import scipy.ndimage

from stasnake.errors import InputError
from stasnake.tilt.validate_tomogram import correlation_with_truth


@pytest.fixture(scope="module")
def phantom():
    rng = np.random.default_rng(0)
    return scipy.ndimage.gaussian_filter(rng.standard_normal((24, 40, 36)), 1.0).astype(np.float32)


def test_identity_sign_and_noise(phantom):
    shells, band = correlation_with_truth(-phantom, phantom, 5.0)  # protein-dark tomogram
    assert band == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(shells.fsc.to_numpy(), 1.0, atol=1e-5)
    _, band = correlation_with_truth(phantom, phantom, 5.0, protein_dark=False)
    assert band == pytest.approx(1.0, abs=1e-5)
    noise = np.random.default_rng(1).standard_normal(phantom.shape).astype(np.float32)
    shells, band = correlation_with_truth(noise, phantom, 5.0)
    assert abs(band) < 0.1
    assert shells.n_coefficients.sum() > 0.5 * phantom.size  # shells to Nyquist cover most of the spectrum


def test_low_pass_shows_in_the_shells(phantom):
    """A tomogram low-passed at 20 Å (pixel 5 Å) keeps the low shells and loses the high ones."""
    spectrum = np.fft.rfftn(phantom)
    k = np.sqrt(sum(np.meshgrid(*(np.fft.fftfreq(n) ** 2 for n in phantom.shape[:2]), np.fft.rfftfreq(phantom.shape[2]) ** 2,
                                indexing="ij"))) / 5.0  # fmt: skip
    low = np.fft.irfftn(spectrum * (k < 1 / 20), s=phantom.shape) + 0.05 * np.random.default_rng(2).standard_normal(phantom.shape)
    shells, _ = correlation_with_truth(-low, phantom, 5.0, n_shells=10)
    assert (shells.fsc[shells.resolution_A > 25] > 0.9).all()
    assert (shells.fsc[shells.resolution_A < 17] < 0.2).all()


def test_shape_mismatch_names_the_phantom(phantom):
    with pytest.raises(InputError, match="truth/TS_01/phantom.mrc: phantom is"):
        correlation_with_truth(phantom[:-1], phantom, 5.0, source="truth/TS_01/phantom.mrc")
