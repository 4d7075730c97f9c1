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
