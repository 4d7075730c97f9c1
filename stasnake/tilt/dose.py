"""Exposure (dose) weighting of cryo-EM images (Grant & Grigorieff 2015).

Radiation damage attenuates the amplitude at spatial frequency k (1/Å) after an
accumulated exposure N (e/Å²) by ``exp(-N / (2 Ne(k)))`` with the critical
exposure ``Ne(k) = 0.245 k^-1.665 + 2.81`` e/Å² measured at 300 kV; at 200 kV
the critical exposure is 0.8 times smaller.

References
----------
Grant, T. & Grigorieff, N. (2015). Measuring the optimal exposure for single
particle cryo-EM using a 2.6 Å reconstruction of rotavirus VP6. eLife 4:e06980.
doi:10.7554/eLife.06980
"""

from __future__ import annotations

import numpy as np

from stasnake.tilt.ctf import frequency_grid

_VOLTAGE_SCALE = {300.0: 1.0, 200.0: 0.8}


def critical_exposure(k_per_angstrom, voltage_kv: float = 300) -> np.ndarray:
    """Critical exposure Ne(k) in e/Å² at spatial frequency k (1/Å); inf at k = 0."""
    scale = _VOLTAGE_SCALE.get(float(voltage_kv))
    if scale is None:
        raise ValueError(f"critical exposure is known at 200 and 300 kV only, not {voltage_kv} kV")
    k = np.asarray(k_per_angstrom, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return scale * (0.245 * np.power(k, -1.665, where=k > 0, out=np.full_like(k, np.inf)) + 2.81)


def dose_filter(
    shape,
    pixel_size_angstrom: float,
    pre_exposure_e_per_A2: float,
    dose_e_per_A2: float | None = None,
    rfft: bool = True,
    voltage_kv: float = 300,
) -> np.ndarray:
    """Amplitude attenuation by radiation damage on the FFT grid of an image.

    Parameters
    ----------
    shape : tuple of int
        Image shape (ny, nx) in pixels.
    pixel_size_angstrom : float
        Pixel size in Å.
    pre_exposure_e_per_A2 : float
        Exposure accumulated before this image, e/Å².
    dose_e_per_A2 : float, optional
        Exposure of this image itself, e/Å². When given, the filter is the
        mean attenuation over the exposure from ``pre`` to ``pre + dose``,
        ``2 Ne / dose (exp(-pre / 2Ne) - exp(-(pre + dose) / 2Ne))`` (the
        image integrates its frames); otherwise ``exp(-pre / (2 Ne))``.
    rfft : bool
        Half grid (ny, nx // 2 + 1) for ``rfft2``; else the full (ny, nx).
    voltage_kv : float
        300 or 200 kV.

    Returns
    -------
    np.ndarray
        float64 factors in (0, 1], 1 at zero frequency, index [0, 0] = DC.
    """
    kx, ky = frequency_grid(shape, pixel_size_angstrom, rfft)
    pre = float(pre_exposure_e_per_A2)
    if pre < 0 or (dose_e_per_A2 is not None and dose_e_per_A2 < 0):
        raise ValueError("exposures must be non-negative")
    return dose_attenuation(np.sqrt(kx**2 + ky**2), pre, dose_e_per_A2, voltage_kv)


def dose_attenuation(k_per_angstrom, pre_exposure_e_per_A2, dose_e_per_A2=None, voltage_kv: float = 300) -> np.ndarray:
    """The radial form of :func:`dose_filter`: attenuation at ``|k|`` (1/Å), broadcast with the exposures.

    ``exp(-pre / 2Ne(k))``, times the mean over the image's own exposure ``dose``
    when given (non-zero); exposures in e/Å².
    """
    ne = critical_exposure(k_per_angstrom, voltage_kv)
    pre = np.asarray(pre_exposure_e_per_A2, dtype=np.float64)
    if dose_e_per_A2 is None or not np.any(dose_e_per_A2):
        return np.exp(-pre / (2.0 * ne))
    x = np.asarray(dose_e_per_A2, dtype=np.float64) / (2.0 * ne)  # 0 at k = 0, where the mean factor is 1
    safe = np.where(x > 0, x, 1.0)
    mean_over_exposure = np.where(x > 0, -np.expm1(-safe) / safe, 1.0)
    return np.exp(-pre / (2.0 * ne)) * mean_over_exposure
