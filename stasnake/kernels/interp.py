"""Numba trilinear resampling of a (z, y, x) volume under an affine map of (x, y, z)."""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always", cache=True, fastmath=True)
def _sample(vol, iz, iy, ix, cval):
    nz, ny, nx = vol.shape
    if iz < 0 or iy < 0 or ix < 0 or iz >= nz or iy >= ny or ix >= nx:
        return cval
    return vol[iz, iy, ix]


@numba.njit(parallel=True, cache=True, fastmath=True)
def affine_trilinear(vol, m, offset_xyz, out_shape_zyx, out_centre_xyz, cval):
    """Resample ``out(p) = vol(m @ (p - out_centre) + offset)`` trilinearly.

    Parameters
    ----------
    vol : np.ndarray
        (nz, ny, nx) float32 input.
    m : np.ndarray
        (3, 3) float64 matrix acting on (x, y, z) column vectors.
    offset_xyz : np.ndarray
        (3,) float64 source index (x, y, z) of the output centre.
    out_shape_zyx : tuple of int
        (nz, ny, nx) output shape.
    out_centre_xyz : np.ndarray
        (3,) float64 output index (x, y, z) of its centre.
    cval : float
        Value of samples outside the input (each of the 8 neighbours outside the
        input counts as ``cval``, like scipy's "grid-constant" mode).

    Returns
    -------
    np.ndarray
        float32 volume of ``out_shape_zyx``.
    """
    onz, ony, onx = out_shape_zyx
    out = np.empty((onz, ony, onx), dtype=np.float32)
    cv = np.float32(cval)
    for k in numba.prange(onz):
        z = k - out_centre_xyz[2]
        for j in range(ony):
            y = j - out_centre_xyz[1]
            bx = m[0, 1] * y + m[0, 2] * z + offset_xyz[0]
            by = m[1, 1] * y + m[1, 2] * z + offset_xyz[1]
            bz = m[2, 1] * y + m[2, 2] * z + offset_xyz[2]
            for i in range(onx):
                x = i - out_centre_xyz[0]
                sx = m[0, 0] * x + bx
                sy = m[1, 0] * x + by
                sz = m[2, 0] * x + bz
                x0 = int(np.floor(sx))
                y0 = int(np.floor(sy))
                z0 = int(np.floor(sz))
                fx = np.float32(sx - x0)
                fy = np.float32(sy - y0)
                fz = np.float32(sz - z0)
                gx = np.float32(1.0) - fx
                gy = np.float32(1.0) - fy
                gz = np.float32(1.0) - fz
                nz, ny, nx = vol.shape
                if x0 >= 0 and y0 >= 0 and z0 >= 0 and x0 + 1 < nx and y0 + 1 < ny and z0 + 1 < nz:
                    c00 = vol[z0, y0, x0] * gx + vol[z0, y0, x0 + 1] * fx
                    c01 = vol[z0, y0 + 1, x0] * gx + vol[z0, y0 + 1, x0 + 1] * fx
                    c10 = vol[z0 + 1, y0, x0] * gx + vol[z0 + 1, y0, x0 + 1] * fx
                    c11 = vol[z0 + 1, y0 + 1, x0] * gx + vol[z0 + 1, y0 + 1, x0 + 1] * fx
                elif x0 < -1 or y0 < -1 or z0 < -1 or x0 >= nx or y0 >= ny or z0 >= nz:
                    out[k, j, i] = cv
                    continue
                else:
                    c00 = _sample(vol, z0, y0, x0, cv) * gx + _sample(vol, z0, y0, x0 + 1, cv) * fx
                    c01 = _sample(vol, z0, y0 + 1, x0, cv) * gx + _sample(vol, z0, y0 + 1, x0 + 1, cv) * fx
                    c10 = _sample(vol, z0 + 1, y0, x0, cv) * gx + _sample(vol, z0 + 1, y0, x0 + 1, cv) * fx
                    c11 = (_sample(vol, z0 + 1, y0 + 1, x0, cv) * gx
                           + _sample(vol, z0 + 1, y0 + 1, x0 + 1, cv) * fx)
                c0 = c00 * gy + c01 * fy
                c1 = c10 * gy + c11 * fy
                out[k, j, i] = c0 * gz + c1 * fz
    return out


#: Border (pixels) of ``cval`` added around a volume before its cubic B-spline prefilter, as
#: scipy does for ``mode="grid-constant"``: the spline then follows the constant outside.
CUBIC_PAD = 12


def cubic_bspline_coefficients(vol: np.ndarray, cval: float = 0.0) -> np.ndarray:
    """Cubic B-spline coefficients of a volume padded by :data:`CUBIC_PAD` pixels of ``cval``.

    The prefilter of ``scipy.ndimage.map_coordinates(order=3, mode="grid-constant")``: pad with
    ``cval``, then ``spline_filter`` with mirror boundaries. Returns float64 (z, y, x).
    """
    import scipy.ndimage

    padded = np.pad(np.asarray(vol, dtype=np.float64), CUBIC_PAD, mode="constant", constant_values=float(cval))
    return scipy.ndimage.spline_filter(padded, order=3, mode="mirror", output=np.float64)


@numba.njit(inline="always", cache=True, fastmath=True)
def _bspline3_weights(f):
    """Weights of the taps at -1, 0, 1, 2 for a fractional offset ``f`` in [0, 1)."""
    g = 1.0 - f
    f2 = f * f
    f3 = f2 * f
    return g * g * g / 6.0, (3.0 * f3 - 6.0 * f2 + 4.0) / 6.0, (-3.0 * f3 + 3.0 * f2 + 3.0 * f + 1.0) / 6.0, f3 / 6.0


@numba.njit(parallel=True, cache=True, fastmath=True)
def affine_cubic_bspline(coeffs, m, offset_xyz, out_shape_zyx, out_centre_xyz, cval, pad):
    """Resample ``out(p) = vol(m @ (p - out_centre) + offset)`` with cubic B-splines.

    Parameters
    ----------
    coeffs : np.ndarray
        (nz + 2 pad, ny + 2 pad, nx + 2 pad) float64 B-spline coefficients of the input volume
        padded by ``pad`` pixels (:func:`cubic_bspline_coefficients`).
    m, offset_xyz, out_shape_zyx, out_centre_xyz
        As :func:`affine_trilinear` (``offset_xyz`` indexes the unpadded input).
    cval : float
        Value of samples whose 4 x 4 x 4 taps leave the padded coefficients (far outside the
        input, where the padded spline equals ``cval``).
    pad : int
        The padding of ``coeffs``, pixels.

    Returns
    -------
    np.ndarray
        float32 volume of ``out_shape_zyx``; matches ``scipy.ndimage.map_coordinates(order=3,
        mode="grid-constant")`` to rounding.
    """
    onz, ony, onx = out_shape_zyx
    out = np.empty((onz, ony, onx), dtype=np.float32)
    cnz, cny, cnx = coeffs.shape
    for k in numba.prange(onz):
        z = k - out_centre_xyz[2]
        wz = np.empty(4)
        wy = np.empty(4)
        wx = np.empty(4)
        for j in range(ony):
            y = j - out_centre_xyz[1]
            bx = m[0, 1] * y + m[0, 2] * z + offset_xyz[0] + pad
            by = m[1, 1] * y + m[1, 2] * z + offset_xyz[1] + pad
            bz = m[2, 1] * y + m[2, 2] * z + offset_xyz[2] + pad
            for i in range(onx):
                x = i - out_centre_xyz[0]
                sx = m[0, 0] * x + bx
                sy = m[1, 0] * x + by
                sz = m[2, 0] * x + bz
                x0 = int(np.floor(sx))
                y0 = int(np.floor(sy))
                z0 = int(np.floor(sz))
                if x0 < 1 or y0 < 1 or z0 < 1 or x0 + 2 >= cnx or y0 + 2 >= cny or z0 + 2 >= cnz:
                    out[k, j, i] = cval
                    continue
                wx[0], wx[1], wx[2], wx[3] = _bspline3_weights(sx - x0)
                wy[0], wy[1], wy[2], wy[3] = _bspline3_weights(sy - y0)
                wz[0], wz[1], wz[2], wz[3] = _bspline3_weights(sz - z0)
                acc = 0.0
                for a in range(4):
                    plane = 0.0
                    for b in range(4):
                        row = coeffs[z0 - 1 + a, y0 - 1 + b]
                        plane += wy[b] * (wx[0] * row[x0 - 1] + wx[1] * row[x0] + wx[2] * row[x0 + 1]
                                          + wx[3] * row[x0 + 2])
                    acc += wz[a] * plane
                out[k, j, i] = acc
    return out
