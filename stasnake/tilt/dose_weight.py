"""Exposure (dose) weighting of a tilt series (Grant & Grigorieff 2015 filter per tilt).

Every tilt image is multiplied in Fourier space by the radiation-damage
attenuation of its accumulated exposure, ``exp(-N_eff / (2 Ne(k)))``
(:func:`stasnake.tilt.dose.dose_filter`, critical exposure ``Ne(k)``), so
that high frequencies of late, damaged images are down-weighted relative to
those of early images. The weight at zero frequency is 1: each image keeps its
mean.

Effective exposure, as in the Dynamo tilt-series protocol ("the accumulated
dose corresponding to the last frame of each tilt, reduced by 20% to be more
conservative")::

    N_eff = (1 - reduction) * (pre_exposure + dose)

where ``pre_exposure`` is the exposure received before the tilt was recorded
and ``dose`` the tilt's own exposure (``pre_exposure + dose`` = exposure at
the end of the tilt's last frame). ``reduction = 0.2`` multiplies it by 0.8;
``reduction = 0`` uses the full end-of-tilt exposure.

References
----------
Grant, T. & Grigorieff, N. (2015). eLife 4:e06980. doi:10.7554/eLife.06980
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from stasnake.errors import InputError
from stasnake.tilt.dose import dose_filter


def effective_exposure(pre_exposure_e_per_A2, dose_e_per_A2=None, reduction: float = 0.2) -> np.ndarray:
    """Exposure used for weighting each tilt, ``(1 - reduction) * (pre + dose)`` in e/Å².

    Parameters
    ----------
    pre_exposure_e_per_A2 : array_like
        (n_tilts,) exposure before each tilt, e/Å².
    dose_e_per_A2 : array_like or float, optional
        (n_tilts,) or scalar exposure of each tilt itself, e/Å²; None = 0.
    reduction : float
        Fraction in [0, 1) removed from the end-of-tilt exposure.

    Returns
    -------
    np.ndarray
        (n_tilts,) float64 effective exposures, e/Å².
    """
    pre = np.asarray(pre_exposure_e_per_A2, dtype=np.float64).ravel()
    dose = np.zeros_like(pre) if dose_e_per_A2 is None else np.broadcast_to(
        np.asarray(dose_e_per_A2, dtype=np.float64), pre.shape)  # fmt: skip
    if not 0.0 <= float(reduction) < 1.0:
        raise InputError("reduction", f"must lie in [0, 1), got {reduction}")
    for name, values in (("pre_exposure_e_per_A2", pre), ("dose_e_per_A2", dose)):
        bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
        if bad.size:
            raise InputError(f"{name}[{bad[0]}]", f"exposure must be finite and non-negative, got {values[bad[0]]}")
    return (1.0 - float(reduction)) * (pre + dose)


def dose_weight_stack(
    stack: np.ndarray,
    pixel_size_angstrom: float,
    pre_exposure_e_per_A2,
    dose_e_per_A2=None,
    voltage_kv: float = 300.0,
    reduction: float = 0.2,
    workers: int = 1,
) -> np.ndarray:
    """Apply the Grant & Grigorieff exposure filter to every tilt of a stack.

    Image ``i`` is multiplied in Fourier space by
    ``exp(-N_i / (2 Ne(k)))`` with ``N_i = (1 - reduction) * (pre_i + dose_i)``
    (see the module docstring); the zero-frequency weight is 1, so every
    image keeps its mean.

    Parameters
    ----------
    stack : np.ndarray
        (n_tilts, ny, nx) tilt images (any order; the exposures follow it).
    pixel_size_angstrom : float
        Pixel size in Å.
    pre_exposure_e_per_A2 : array_like
        (n_tilts,) exposure accumulated before each image, e/Å².
    dose_e_per_A2 : array_like or float, optional
        (n_tilts,) (or one value for all) exposure of each image itself, e/Å²;
        None counts only the pre-exposure.
    voltage_kv : float
        300 or 200 kV (critical exposure 0.8x smaller at 200 kV).
    reduction : float
        Fraction of the end-of-tilt exposure left out (Dynamo: 0.2).
    workers : int
        Threads for scipy.fft.

    Returns
    -------
    np.ndarray
        (n_tilts, ny, nx) float32 weighted stack.
    """
    if stack.ndim != 3:
        raise ValueError(f"stack must be (n_tilts, ny, nx), got shape {stack.shape}")
    n, ny, nx = stack.shape
    pre = np.asarray(pre_exposure_e_per_A2, dtype=np.float64).ravel()
    if pre.size != n:
        raise ValueError(f"{pre.size} pre-exposures for a stack of {n} images")
    if dose_e_per_A2 is not None and np.ndim(dose_e_per_A2) and np.size(dose_e_per_A2) != n:
        raise ValueError(f"{np.size(dose_e_per_A2)} doses for a stack of {n} images")
    exposure = effective_exposure(pre, dose_e_per_A2, reduction)
    out = np.empty((n, ny, nx), dtype=np.float32)
    for i in range(n):
        spectrum = scipy.fft.rfft2(np.asarray(stack[i], dtype=np.float32), workers=workers)
        if exposure[i] > 0:
            spectrum *= dose_filter((ny, nx), pixel_size_angstrom, exposure[i], None, rfft=True,
                                    voltage_kv=voltage_kv).astype(np.float32)  # fmt: skip
        out[i] = scipy.fft.irfft2(spectrum, s=(ny, nx), workers=workers)
    return out
