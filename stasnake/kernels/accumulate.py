"""Numba kernel: add one aligned particle's spectrum, weighted by its rotated wedge (and transfer), to Fourier sums.

Missing-wedge compensated averaging (Dynamo's ``fweight``; see
:mod:`stasnake.sta.average`) keeps two half-grid Fourier volumes: the sum of the
particles' spectra and the number of particles that measured each frequency.
For a particle with pose ``R`` (active, reference -> tomogram) a reference-frame
frequency ``k`` was measured when ``R k`` lies outside the tomogram's missing
wedge (:func:`stasnake.sta.wedge.measured_in_tomogram`). This kernel evaluates
that test on the fly for every frequency of the output grid, adds the
particle's spectrum where it is 1 and adds the 0/1 weight. With a transfer
(CTF-weighted averaging, :mod:`stasnake.sta.transfer`) the weight ``H`` is the
wedge times the transfer of the tilt nearest to ``R k`` (:func:`transfer_at`),
and the kernel adds ``H P`` and ``H^2``.

The per-frequency maths is the plain Python function :func:`wedge_weight`,
wrapped with ``numba.njit`` here and with ``numba.cuda.jit(device=True)`` in
:mod:`stasnake.kernels.accumulate_cuda`, so both paths decide alike.

The tilt-range test uses no trigonometric call per voxel. Folded to ``kx >= 0``
a frequency's tilt ``t = atan2(kz, kx)`` lies in ``(-90, 90]`` degrees, and
``t >= lo`` is ``sin(t - lo) >= 0``, i.e. ``kz cos(lo) - kx sin(lo) >= 0``
(similarly ``t <= hi``), with the same 1e-9 degree tolerance as
:func:`~stasnake.sta.wedge.measured_in_tomogram`.

Grids (``numpy.fft`` layout, (z, y, x) arrays): the output is the ``rfftn``
half grid (d, d, d // 2 + 1) of a d-box; the particle spectrum is the half
grid (n, n, n // 2 + 1) of its n-box, ``d <= n``. Output frequency
``(kx, ky, kz)`` (Fourier pixels of the d-box; the same cycles per box) reads
the particle spectrum at the same ``(kx, ky, kz)``: a Fourier crop (binning by
``n / d``) when ``d < n``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Tolerance of the tilt-range test, as in :func:`stasnake.sta.wedge.measured_in_tomogram` (degrees).
EPS_DEG = 1e-9
#: Number of float64 values describing one tilt range (see :func:`wedge_parameters`).
WEDGE_PARAMS = 6


def wedge_parameters(tilt_ranges_deg) -> np.ndarray:
    """Per-particle constants of the tilt-range test.

    Parameters
    ----------
    tilt_ranges_deg : array_like
        (m, 2) (min, max) tilt in degrees about the tomogram y axis, each
        within -90..90 (Dynamo ``ymintilt``, ``ymaxtilt``). (-90, 90) means
        fully sampled.

    Returns
    -------
    np.ndarray
        (m, 6) float64: ``cos lo, sin lo, cos hi, sin hi``, 1.0 when the range
        reaches +-90 degrees (then ``kx = 0`` is measured) else 0.0, and
        ``sin(EPS_DEG)``.
    """
    r = np.asarray(tilt_ranges_deg, dtype=np.float64).reshape(-1, 2)
    lo, hi = np.radians(r[:, 0]), np.radians(r[:, 1])
    reaches = (r[:, 1] >= 90.0 - EPS_DEG) | (r[:, 0] <= -90.0 + EPS_DEG)
    tol = np.full(len(r), np.sin(np.radians(EPS_DEG)))
    return np.stack([np.cos(lo), np.sin(lo), np.cos(hi), np.sin(hi), reaches.astype(np.float64), tol], axis=1)


def fft_index_frequency(i, n):
    """Signed frequency (cycles per box) of index ``i`` of an n-point FFT axis (``fftfreq(n) * n``)."""
    return i if i < (n + 1) // 2 else i - n


def wedge_weight(rot, kx, ky, kz, wedge):
    """1.0 when reference frequency ``k`` is measured by a particle of pose ``rot``, else 0.0.

    Parameters
    ----------
    rot : array
        (3, 3) float64 pose ``R`` (active, reference -> tomogram) on (x, y, z).
    kx, ky, kz : float
        Frequency in the reference frame (any unit; Fourier pixels here).
    wedge : array
        (6,) float64 constants of the particle's tilt range (:func:`wedge_parameters`).

    Returns
    -------
    float
        ``W_tomo(R k)``: 1.0 measured, 0.0 in the missing wedge.
    """
    tx = rot[0, 0] * kx + rot[0, 1] * ky + rot[0, 2] * kz
    ty = rot[1, 0] * kx + rot[1, 1] * ky + rot[1, 2] * kz
    tz = rot[2, 0] * kx + rot[2, 1] * ky + rot[2, 2] * kz
    r_xz = math.sqrt(tx * tx + tz * tz)
    if r_xz <= 1e-9 * max(1.0, abs(ty)):
        return 1.0  # the tilt axis (and k = 0) is always measured
    if tx < 0.0 or (tx == 0.0 and tz < 0.0):
        tx = -tx  # fold to the representative with tilt in (-90, 90]
        tz = -tz
    tol = wedge[5] * r_xz
    if wedge[4] > 0.5 and tx <= tol:
        return 1.0  # |tilt| = 90 degrees, measured when the range reaches it
    if tz * wedge[0] - tx * wedge[1] >= -tol and tx * wedge[3] - tz * wedge[2] >= -tol:
        return 1.0
    return 0.0


def make_transfer_weight(wedge_test, transfer):
    """:func:`transfer_weight` built on compiled twins of :func:`wedge_weight` and :func:`transfer_at`.

    numba (njit or CUDA device functions) calls compiled functions only; the
    closure lets the CPU and CUDA kernels share this code.
    """

    def weight(rot, kx, ky, kz, wedge, tilts, table, samples_per_pixel):
        w = wedge_test(rot, kx, ky, kz, wedge)
        return w if w == 0.0 or tilts.shape[0] == 0 else transfer(rot, kx, ky, kz, tilts, table, samples_per_pixel)

    return weight


def transfer_at(rot, kx, ky, kz, tilts, table, samples_per_pixel):
    """The transfer part of :func:`transfer_weight` (no wedge test)."""
    nt = tilts.shape[0]
    tx = rot[0, 0] * kx + rot[0, 1] * ky + rot[0, 2] * kz
    ty = rot[1, 0] * kx + rot[1, 1] * ky + rot[1, 2] * kz
    tz = rot[2, 0] * kx + rot[2, 1] * ky + rot[2, 2] * kz
    r = math.sqrt(tx * tx + ty * ty + tz * tz) * samples_per_pixel
    j = int(r)
    nr = table.shape[1]
    if j >= nr - 1:
        j = nr - 2
        r = nr - 1.0
    f = r - j
    if math.sqrt(tx * tx + tz * tz) <= 1e-9 * max(1.0, abs(ty)):
        total = 0.0  # the tilt axis is on every slice
        for i in range(nt):
            total += (1.0 - f) * table[i, j] + f * table[i, j + 1]
        return total / nt
    if tx < 0.0 or (tx == 0.0 and tz < 0.0):
        tx = -tx
        tz = -tz
    t = math.atan2(tz, tx)
    lo = 0
    hi = nt - 1
    while hi - lo > 1:  # bisection: tilts[lo] <= t <= tilts[hi]
        mid = (lo + hi) // 2
        if tilts[mid] <= t:
            lo = mid
        else:
            hi = mid
    i = lo if abs(t - tilts[lo]) <= abs(tilts[hi] - t) else hi
    return (1.0 - f) * table[i, j] + f * table[i, j + 1]


transfer_weight = make_transfer_weight(wedge_weight, transfer_at)
transfer_weight.__name__ = "transfer_weight"
transfer_weight.__doc__ = """Weight of reference frequency ``k`` for a particle: its wedge, times its transfer when given.

    Parameters
    ----------
    rot, kx, ky, kz, wedge
        As :func:`wedge_weight`; ``k`` in cycles per box of the particle.
    tilts : array
        (n_tilts,) float64 increasing tilt angles of the particle's tomogram,
        radians; empty for the binary wedge alone.
    table : array
        (n_tilts, n_r) float64 radial transfer of each tilt
        (:func:`stasnake.sta.transfer.transfer_table`), sampled every
        ``1 / samples_per_pixel`` cycles per box.
    samples_per_pixel : float
        Table samples per cycle per box.

    Returns
    -------
    float
        0.0 in the missing wedge; else 1.0 (no tilts) or the transfer of the
        tilt nearest to ``R k`` (its slice angle ``atan2(kz, kx)``, folded to
        (-90, 90]), linear in ``|k|``; on the tilt axis (``R k`` along y) the
        mean of the tilts.
    """

_wedge_weight = numba.njit(inline="always", cache=True, fastmath=True)(wedge_weight)
_transfer_at = numba.njit(inline="always", cache=True, fastmath=True)(transfer_at)
_transfer_weight = numba.njit(inline="always", cache=True, fastmath=True)(
    make_transfer_weight(_wedge_weight, _transfer_at))
_freq = numba.njit(inline="always", cache=True)(fft_index_frequency)
#: Arguments of :func:`accumulate_spectrum` meaning "no transfer" (binary wedge only).
NO_TILTS = np.zeros(0, dtype=np.float64)
NO_TABLE = np.zeros((0, 2), dtype=np.float64)


def accumulate_spectrum(spectrum, rot, wedge, scale, sum_out, weight_out, tilts=None, table=None,
                        samples_per_pixel=1.0):  # fmt: skip
    """Add ``scale * H(k) * spectrum(k)`` to ``sum_out`` and ``H(k)^2`` to ``weight_out`` in place.

    ``H`` is :func:`transfer_weight`: the 0/1 wedge ``W(k)`` without ``tilts``
    (then ``H^2 = W``, the count of particles that measured ``k``), else the
    wedge times the particle's CTF and exposure transfer.

    Parameters
    ----------
    spectrum : np.ndarray
        (n, n, n // 2 + 1) complex64 ``rfftn`` of the particle brought into
        the reference frame.
    rot : np.ndarray
        (3, 3) float64 pose ``R`` of the particle (reference -> tomogram).
    wedge : np.ndarray
        (6,) float64 tilt-range constants (:func:`wedge_parameters`).
    scale : float
        Factor on the spectrum (``(d / n) ** 3`` keeps real-space values when cropping).
    sum_out : np.ndarray
        (d, d, d // 2 + 1) complex128 sum of weighted spectra, ``d <= n``.
    weight_out : np.ndarray
        (d, d, d // 2 + 1) float64 sum of squared weights.
    tilts, table, samples_per_pixel
        The particle's transfer (:func:`transfer_weight`); default: none.
    """
    if tilts is None:
        tilts, table = NO_TILTS, NO_TABLE
    _accumulate(spectrum, rot, wedge, float(scale), sum_out, weight_out, np.ascontiguousarray(tilts, np.float64),
                np.ascontiguousarray(table, np.float64), float(samples_per_pixel))  # fmt: skip


@numba.njit(parallel=True, cache=True, fastmath=True)
def _accumulate(spectrum, rot, wedge, scale, sum_out, weight_out, tilts, table, samples_per_pixel):
    d = sum_out.shape[0]
    dx = sum_out.shape[2]
    n = spectrum.shape[0]
    for iz in numba.prange(d):
        fz = _freq(np.int64(iz), d)
        jz = fz if fz >= 0 else fz + n  # the same frequency in the particle's n-grid
        for iy in range(d):
            fy = _freq(iy, d)
            jy = fy if fy >= 0 else fy + n
            for ix in range(dx):
                w = _transfer_weight(rot, float(ix), float(fy), float(fz), wedge, tilts, table, samples_per_pixel)
                if w != 0.0:
                    sum_out[iz, iy, ix] += (scale * w) * spectrum[jz, jy, ix]
                    weight_out[iz, iy, ix] += w * w


@numba.njit(parallel=True, cache=True, fastmath=True)
def wedge_weights(rot, wedge, d):
    """The (d, d, d // 2 + 1) float32 half-grid mask :func:`wedge_weight` of one pose (for tests)."""
    out = np.empty((d, d, d // 2 + 1), dtype=np.float32)
    for iz in numba.prange(d):
        fz = float(_freq(np.int64(iz), d))
        for iy in range(d):
            fy = float(_freq(iy, d))
            for ix in range(d // 2 + 1):
                out[iz, iy, ix] = _wedge_weight(rot, float(ix), fy, fz, wedge)
    return out
