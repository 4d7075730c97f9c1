"""Missing-wedge masks in Fourier space, in the tomogram frame or rotated into a reference frame.

Geometry (``stasnake.kernels.backproject``): a tomogram point (X, Y, Z) projects in
the aligned tilt image at ``u = X cos t + Z sin t``, so by the projection-slice
theorem the image at tilt ``t`` measures the central plane spanned by
``(cos t, 0, sin t)`` and the y axis. A frequency ``k = (kx, ky, kz)`` of the
tomogram is measured when its tilt ``atan(kz / kx)`` lies in the tilt range
(``kx = 0, kz != 0`` only when the range reaches 90 degrees); the y axis and
``k = 0`` are always measured.

A particle with pose ``R`` (active, reference -> tomogram, ``particle(R p + c) =
reference(p + c)``) has Fourier transform ``P(R k) = F(k)``: its wedge seen in the
reference frame is ``W_ref(k) = W_tomo(R k)``.

Fourier grids follow ``numpy.fft``: array index ``[iz, iy, ix]`` of an
``rfftn`` of an (n, n, n) box is the frequency (in Fourier pixels, cycles per box)
``(kx, ky, kz) = (ix, fftfreq(n)[iy] * n, fftfreq(n)[iz] * n)``.
"""

from __future__ import annotations

import numpy as np

from stasnake.errors import InputError


def fourier_pixel_grid(box: int, rfft: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer frequencies (kx, ky, kz) of an (n, n, n) box, broadcastable to its Fourier array.

    Parameters
    ----------
    box : int
        Side n of the cubic box, pixels.
    rfft : bool
        True: the ``rfftn`` half grid (n, n, n // 2 + 1); False: the full ``fftn`` grid.

    Returns
    -------
    kx, ky, kz : np.ndarray
        float64 arrays of shapes (1, 1, nx), (1, n, 1), (n, 1, 1): Fourier
        pixels, i.e. cycles per box.
    """
    n = int(box)
    f = np.fft.fftfreq(n) * n
    fx = np.arange(n // 2 + 1, dtype=np.float64) if rfft else f
    return fx[None, None, :], f[None, :, None], f[:, None, None]


def _check_tilt_range(tilt_range_deg) -> tuple[float, float]:
    lo, hi = (float(v) for v in np.asarray(tilt_range_deg, dtype=np.float64).ravel()[:2])
    if not (-90.0 <= lo <= hi <= 90.0):
        raise InputError("tilt range", f"must satisfy -90 <= min <= max <= 90 degrees, got ({lo}, {hi})")
    return lo, hi


def measured_in_tomogram(kx, ky, kz, tilt_range_deg) -> np.ndarray:
    """Whether tomogram frequencies (kx, ky, kz) are measured by a single-axis tilt series.

    Parameters
    ----------
    kx, ky, kz : array_like
        Frequencies in the tomogram frame (any common unit), broadcastable.
    tilt_range_deg : tuple of float
        (min, max) tilt angle in degrees about the y axis (Dynamo ``ymintilt``,
        ``ymaxtilt``).

    Returns
    -------
    np.ndarray
        bool, True where measured.
    """
    lo, hi = _check_tilt_range(tilt_range_deg)
    kx, ky, kz = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (kx, ky, kz)))
    r_xz = np.hypot(kx, kz)
    on_axis = r_xz <= 1e-9 * np.maximum(1.0, np.abs(ky))
    # tilt of the frequency in (-90, 90]: the plane of tilt t holds (cos t, 0, sin t)
    t = np.degrees(np.arctan2(kz, kx))
    t = np.where(t > 90.0, t - 180.0, np.where(t <= -90.0, t + 180.0, t))
    eps = 1e-9
    inside = (t >= lo - eps) & (t <= hi + eps)
    if hi >= 90.0 - eps or lo <= -90.0 + eps:
        inside |= np.abs(np.abs(t) - 90.0) <= eps  # kx = 0 needs a 90-degree tilt
    return inside | on_axis


def wedge_mask(box: int, tilt_range_deg, rotation=None, rfft: bool = True) -> np.ndarray:
    """Missing-wedge mask (1 = measured) of a cubic box, optionally seen in a reference frame.

    Parameters
    ----------
    box : int
        Side n of the box, pixels.
    tilt_range_deg : tuple of float
        (min, max) tilt angle in degrees (the particle's tomogram).
    rotation : array_like, optional
        (3, 3) active pose ``R`` (reference -> tomogram) of a particle: the mask
        is ``W_tomo(R k)``, the particle's wedge in the reference frame. None:
        the wedge in the tomogram frame.
    rfft : bool
        True: (n, n, n // 2 + 1) half grid of ``rfftn``; False: (n, n, n) full grid.

    Returns
    -------
    np.ndarray
        float32 mask of 0 and 1, (z, y, x) Fourier layout of ``numpy.fft``.
    """
    kx, ky, kz = fourier_pixel_grid(box, rfft)
    if rotation is not None:
        r = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
        kx, ky, kz = (r[i, 0] * kx + r[i, 1] * ky + r[i, 2] * kz for i in range(3))
    return measured_in_tomogram(kx, ky, kz, tilt_range_deg).astype(np.float32)


def apply_wedge(volume: np.ndarray, tilt_range_deg, rotation=None) -> np.ndarray:
    """Remove the unmeasured Fourier components of a (z, y, x) cubic volume.

    Parameters
    ----------
    volume : np.ndarray
        (n, n, n) real volume.
    tilt_range_deg : tuple of float
        (min, max) tilt angle in degrees.
    rotation : array_like, optional
        Pose whose wedge to apply in the reference frame (see :func:`wedge_mask`).

    Returns
    -------
    np.ndarray
        float32 volume with only measured frequencies.
    """
    import scipy.fft

    vol = np.asarray(volume, dtype=np.float32)
    n = vol.shape[0]
    if vol.shape != (n, n, n):
        raise ValueError(f"volume must be a cube, got shape {vol.shape}")
    ft = scipy.fft.rfftn(vol, workers=-1)
    ft *= wedge_mask(n, tilt_range_deg, rotation)
    return scipy.fft.irfftn(ft, s=vol.shape, workers=-1).astype(np.float32)
