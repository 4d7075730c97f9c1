"""Tomogram against the synthetic truth phantom: correlation per resolution shell.

Used to judge a whole preprocessing chain (alignment, CTF correction,
reconstruction) on synthetic data: the same stack reconstructed with the
estimated and with the true alignment can be compared shell by shell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.fft

from stasnake.errors import InputError


def _frequency_magnitude(shape_zyx, pixel_size_angstrom: float) -> np.ndarray:
    """|k| in 1/Å on the rfftn grid of a (nz, ny, nx) volume (physical units: non-cubic boxes are fine)."""
    nz, ny, nx = shape_zyx
    kz = scipy.fft.fftfreq(nz)[:, None, None]
    ky = scipy.fft.fftfreq(ny)[None, :, None]
    kx = scipy.fft.rfftfreq(nx)[None, None, :]
    return np.sqrt(kz**2 + ky**2 + kx**2) / float(pixel_size_angstrom)


def _rfft_weights(nx: int) -> np.ndarray:
    """Multiplicity of each rfft x-frequency in the full spectrum (2 for the mirrored half)."""
    w = np.full(nx // 2 + 1, 2.0)
    w[0] = 1.0
    if nx % 2 == 0:
        w[-1] = 1.0
    return w


def correlation_with_truth(
    tomogram: np.ndarray,
    phantom: np.ndarray,
    pixel_size_angstrom: float,
    n_shells: int = 20,
    band_angstrom: tuple[float, float] = (200.0, 30.0),
    protein_dark: bool = True,
    source: str = "phantom",
) -> tuple[pd.DataFrame, float]:
    """Correlation of a tomogram with the truth phantom, per shell and over one band.

    Parameters
    ----------
    tomogram, phantom : np.ndarray
        (nz, ny, nx) volumes on the same grid (the synthetic phantom is
        written on the tomogram's grid).
    pixel_size_angstrom : float
        Voxel size, Å.
    n_shells : int
        Number of equal-width shells from 0 to Nyquist.
    band_angstrom : (float, float)
        Low and high resolution (Å) of the summary band.
    protein_dark : bool
        The tomogram shows protein dark (stasnake's convention) while the
        phantom is protein-positive: the sign is flipped so that agreement is
        positive.
    source : str
        Named in errors.

    Returns
    -------
    shells : pd.DataFrame
        One row per shell, FSC-table columns (:mod:`stasnake.sta.fsc`):
        ``shell``, ``frequency_per_A`` and ``resolution_A`` (shell centre),
        ``fsc`` (the correlation), ``n_coefficients`` (counting Friedel mates).
    band_correlation : float
        Correlation over all Fourier coefficients in ``band_angstrom``.
    """
    if tomogram.shape != phantom.shape:
        raise InputError(source, f"phantom is {phantom.shape[::-1]} (x, y, z) but the tomogram is {tomogram.shape[::-1]}")
    a = scipy.fft.rfftn(np.asarray(tomogram, np.float32), workers=-1)
    b = scipy.fft.rfftn(np.asarray(phantom, np.float32), workers=-1)
    a[0, 0, 0] = b[0, 0, 0] = 0.0
    k = _frequency_magnitude(tomogram.shape, pixel_size_angstrom)
    w = _rfft_weights(tomogram.shape[2])[None, None, :]
    cross = ((a * np.conj(b)).real * w).astype(np.float64)
    pa, pb = (np.abs(a) ** 2 * w).astype(np.float64), (np.abs(b) ** 2 * w).astype(np.float64)
    nyquist = 0.5 / float(pixel_size_angstrom)
    index = np.minimum((k / nyquist * n_shells).astype(np.int64), n_shells)  # index n_shells: beyond Nyquist
    count = np.broadcast_to(w, k.shape)
    sums = [np.bincount(index.ravel(), x.ravel(), minlength=n_shells + 1)[:n_shells] for x in (cross, pa, pb, count)]
    sign = -1.0 if protein_dark else 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = sign * sums[0] / np.sqrt(sums[1] * sums[2])
    centres = (np.arange(n_shells) + 0.5) / n_shells * nyquist
    shells = pd.DataFrame({"shell": np.arange(n_shells), "frequency_per_A": centres, "resolution_A": 1.0 / centres,
                           "fsc": corr, "n_coefficients": sums[3]})  # fmt: skip
    lo, hi = band_angstrom
    band = (k > 1.0 / lo) & (k < 1.0 / hi)
    band_corr = sign * cross[band].sum() / np.sqrt(pa[band].sum() * pb[band].sum())
    return shells, float(band_corr)
