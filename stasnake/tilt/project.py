"""Forward projection of a volume onto aligned tilt images, optionally split by beam height.

Geometry (IMOD-like, tomogram Z = beam axis at zero tilt; see docs/conventions):
for a volume ``V[iz, iy, ix]`` with coordinates about its centre
``X = ix - nx // 2``, ``Y = iy - ny // 2``, ``Z = iz - nz // 2`` (pixels), a voxel
projects at tilt angle ``t`` (degrees, mdoc/.tlt sign) into the ALIGNED image
(tilt axis along image y) at ``U = X cos t + Z sin t``, ``V = Y``; the image
``P[iv, iu]`` has its centre at ``(ny // 2, n_u // 2)``. The voxel's height
along the beam toward the electron source is ``h = -X sin t + Z cos t`` (pixels).

The projection is voxel driven: each voxel value (density x 1 voxel of path
length) is split between the two nearest detector columns with linear weights,
so the total mass is conserved for everything that lands on the detector. The
Numba kernel runs the tilt axis (y) as the contiguous inner loop on a
(z, x, y)-ordered copy of the volume and skips (z, x, y-block) runs that are
entirely zero (phantoms are sparse).
"""

from __future__ import annotations

import numba
import numpy as np


def default_height_range(shape_zyx) -> tuple[float, float]:
    """Symmetric height range (pixels) that holds every voxel of a volume at any tilt."""
    nz, _, nx = (int(s) for s in shape_zyx)
    xmax = max(nx // 2, nx - 1 - nx // 2)
    zmax = max(nz // 2, nz - 1 - nz // 2)
    r = float(np.hypot(xmax, zmax)) + 0.5
    return (-r, r)


def height_bin_centres(n_height_bins: int, height_range: tuple[float, float]) -> np.ndarray:
    """Centres (pixels) of ``n_height_bins`` uniform bins over ``[lo, hi)``, shape (n_height_bins,)."""
    lo, hi = (float(v) for v in height_range)
    width = (hi - lo) / n_height_bins
    return lo + width * (np.arange(n_height_bins) + 0.5)


@numba.njit(parallel=True, cache=True)
def _nonempty_runs(vol_zxy, y_block):  # pragma: no cover - numba
    nz, nx, ny = vol_zxy.shape
    nb = (ny + y_block - 1) // y_block
    out = np.zeros((nz, nx, nb), dtype=np.bool_)
    for iz in numba.prange(nz):
        for ix in range(nx):
            for iy in range(ny):
                if vol_zxy[iz, ix, iy] != 0:
                    out[iz, ix, iy // y_block] = True
    return out


@numba.njit(parallel=True, cache=True, fastmath=True)
def _project_kernel(vol_zxy, nonempty, cos_t, sin_t, n_u, n_bins, h_lo, h_width, y_block):  # pragma: no cover
    nz, nx, ny = vol_zxy.shape
    n_t = cos_t.shape[0]
    nb = (ny + y_block - 1) // y_block
    out = np.zeros((n_t, n_bins, n_u, ny), dtype=np.float32)
    cx = nx // 2
    cz = nz // 2
    cu = n_u // 2
    for task in numba.prange(n_t * nb):
        t = task // nb
        b = task % nb
        y0 = b * y_block
        y1 = min(ny, y0 + y_block)
        m = y1 - y0
        c = cos_t[t]
        s = sin_t[t]
        for iz in range(nz):
            z = iz - cz
            for ix in range(nx):
                if not nonempty[iz, ix, b]:
                    continue
                x = ix - cx
                u = x * c + z * s + cu
                i0 = int(np.floor(u))
                if i0 < -1 or i0 >= n_u:
                    continue
                w1 = np.float32(u - i0)
                w0 = np.float32(1.0) - w1
                k = 0
                if n_bins > 1:
                    k = int(np.floor(((-x * s + z * c) - h_lo) / h_width))
                    k = min(max(k, 0), n_bins - 1)
                src = vol_zxy[iz, ix, y0:y1]
                if i0 >= 0:
                    d0 = out[t, k, i0, y0:y1]
                    for j in range(m):  # contiguous along the tilt axis: vectorises
                        d0[j] += w0 * src[j]
                if i0 + 1 < n_u:
                    d1 = out[t, k, i0 + 1, y0:y1]
                    for j in range(m):
                        d1[j] += w1 * src[j]
    return out


def _y_block(ny: int, n_tilts: int) -> int:
    threads = numba.get_num_threads()
    if n_tilts >= threads:
        return ny  # whole rows per tilt task: fastest measured (3.3 G voxel-updates/s on 2 cores)
    per = -(-ny // max(1, threads // n_tilts))
    return max(16, -(-per // 16) * 16)


def project_volume(
    volume_zyx: np.ndarray,
    tilt_angles_deg,
    n_height_bins: int = 1,
    height_range: tuple[float, float] | None = None,
    n_u: int | None = None,
) -> np.ndarray:
    """Project a volume along the beam at each tilt angle (line integrals in voxel units).

    Parameters
    ----------
    volume_zyx : np.ndarray
        (nz, ny, nx) volume, any real dtype (computed in float32).
    tilt_angles_deg : array_like
        Tilt angles in degrees, shape (n_tilts,) (a scalar gives one tilt).
    n_height_bins : int
        Number of beam-height bins. With more than one, each voxel adds to the
        bin of its height ``h = -X sin t + Z cos t`` (pixels, toward the
        source), so that a depth-dependent CTF can be applied per bin; the
        bins sum to the plain projection.
    height_range : (float, float), optional
        ``[lo, hi)`` of the uniform height bins in pixels; voxels outside go to
        the end bins. Default :func:`default_height_range` (all voxels, any
        tilt). Bin centres: :func:`height_bin_centres`.
    n_u : int, optional
        Width of the projection images (pixels); default nx. The image
        centre is column ``n_u // 2``.

    Returns
    -------
    np.ndarray
        float32, shape (n_tilts, ny, n_u) when ``n_height_bins == 1`` and
        (n_tilts, n_height_bins, ny, n_u) otherwise; aligned images with the
        tilt axis along y (rows), ``P[iv, iu]``.
    """
    vol = np.asarray(volume_zyx)
    if vol.ndim != 3:
        raise ValueError(f"volume must be 3-D (z, y, x), got shape {vol.shape}")
    angles = np.atleast_1d(np.asarray(tilt_angles_deg, dtype=np.float64))
    n_height_bins = int(n_height_bins)
    if n_height_bins < 1:
        raise ValueError("n_height_bins must be >= 1")
    nz, ny, nx = vol.shape
    n_u = nx if n_u is None else int(n_u)
    lo, hi = default_height_range(vol.shape) if height_range is None else height_range
    if not hi > lo:
        raise ValueError(f"height_range must be increasing, got {(lo, hi)}")
    vol_zxy = np.ascontiguousarray(np.swapaxes(vol, 1, 2), dtype=np.float32)
    y_block = _y_block(ny, angles.size)
    nonempty = _nonempty_runs(vol_zxy, y_block)
    rad = np.radians(angles)
    out = _project_kernel(vol_zxy, nonempty, np.cos(rad), np.sin(rad), n_u, n_height_bins,
                          float(lo), (float(hi) - float(lo)) / n_height_bins, y_block)  # fmt: skip
    out = np.ascontiguousarray(np.swapaxes(out, 2, 3))
    return out[:, 0] if n_height_bins == 1 else out
