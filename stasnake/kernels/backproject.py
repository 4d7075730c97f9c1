"""Numba back-projection kernel for single-axis tilt geometry.

Geometry (docs/geometry-conventions): a voxel at (X, Y, Z) relative to the
volume centre projects in the aligned image at ``U = X cos t + Z sin t``,
``V = Y``. The per-voxel maths lives in :func:`detector_u`, a plain Python
function that is wrapped with ``numba.njit`` here and can be wrapped with
``numba.cuda.jit(device=True)`` for a GPU twin, so both paths share it.

Loop order (what makes it fast on a 2-core AVX2 machine, see
``benchmarks/bench_wbp.py``):

* The tilt axis (y) is the contiguous inner loop: for fixed (tilt, z, x) the
  detector coordinate and its linear-interpolation weights are shared by every
  y, so the inner loop is a gather-free multiply-add over contiguous rows of
  the projections (y-major layout ``(tilt, u, y)``).
* The weights are hoisted out of the voxel loop: for one z-plane and a group of
  four tilts, a vectorised set-up pass computes, for every x, the row index
  ``i0`` of the left detector column and the weights ``w (1 - f)`` and ``w f``
  (zero weights, with the index clamped, for voxels that project outside the
  detector: no branch in the voxel loop).
* Four tilts are summed per pass over the accumulator: one load and one store
  of the ``(x, y)`` accumulator per four tilts instead of per tilt (eight FMAs
  per stored vector; eight broadcast weights plus the sum fit the 16 AVX2
  registers, eight tilts did not and were slower).
* Row indices are unsigned, so numba emits no negative-index wrap-around code
  in the loop over x.
* The accumulator of one (z, x-tile) lives in a small per-thread buffer
  (``tile_x * sy`` floats, in L2) and is written transposed straight into the
  ``(z, y, x)`` output, so no slab-sized accumulator is zeroed or transposed.
* Parallel over (z, x-tile) tiles with numba ``prange``.
"""

from __future__ import annotations

import numba
import numpy as np


def detector_u(x_px, z_px, cos_t, sin_t, centre_u):
    """Detector column (0-based, fractional) of a voxel at (X, ., Z) about the volume centre.

    Parameters
    ----------
    x_px, z_px : float
        Voxel coordinates relative to the volume centre (pixels).
    cos_t, sin_t : float
        Cosine and sine of the tilt angle.
    centre_u : float
        Column index of the image centre (``nu // 2``).

    Returns
    -------
    float
        ``centre_u + X cos t + Z sin t``.
    """
    return centre_u + x_px * cos_t + z_px * sin_t


_detector_u = numba.njit(inline="always", cache=True, fastmath=True)(detector_u)

#: Tilts summed per pass over the accumulator (register budget of AVX2, see module docstring).
TILT_GROUP = 4
_ONE = np.uint32(1)


@numba.njit(inline="always", cache=True, fastmath=True)
def _interp_coefficients(t, nu_pad, cos_t, sin_t, w, z_px, x0, nxb, cx, cu, rows, a_w, b_w, k):
    """Row indices and weights of tilt ``t`` for voxels x0..x0+nxb of one z-plane (slot k).

    ``rows[k, j]`` is the row ``t * nu_pad + i0`` of the flattened (tilt * (nu + 2), sy)
    projections holding the left detector column ``i0`` (padded index) of voxel
    ``x0 + j``; ``a_w[k, j] = w (1 - f)`` and ``b_w[k, j] = w f`` weight rows
    ``i0`` and ``i0 + 1``. Voxels outside the detector get zero weights and a
    clamped (valid) index.
    """
    nu = nu_pad - 2
    hi = np.float32(nu + 1)
    top = np.float32(nu)
    for j in range(nxb):
        u = _detector_u(np.float32(x0 + j - cx), z_px, cos_t, sin_t, cu) + np.float32(1.0)
        inside = (u >= np.float32(0.0)) & (u < hi)
        i0 = np.int32(min(max(u, np.float32(0.0)), top))
        f = u - np.float32(i0)
        wk = w if inside else np.float32(0.0)
        rows[k, j] = np.uint32(t * nu_pad + i0)
        a_w[k, j] = wk * (np.float32(1.0) - f)
        b_w[k, j] = wk * f


@numba.njit(inline="always", cache=True, fastmath=True)
def _accumulate_4(p, acc, rows, a_w, b_w, nxb, sy):
    """acc[j, :] += sum over the 4 tilt slots of a_w p[row] + b_w p[row + 1] (y contiguous)."""
    for j in range(nxb):
        r0 = rows[0, j]
        r1 = rows[1, j]
        r2 = rows[2, j]
        r3 = rows[3, j]
        a0 = a_w[0, j]
        b0 = b_w[0, j]
        a1 = a_w[1, j]
        b1 = b_w[1, j]
        a2 = a_w[2, j]
        b2 = b_w[2, j]
        a3 = a_w[3, j]
        b3 = b_w[3, j]
        for y in range(sy):
            s0 = a0 * p[r0, y] + b0 * p[r0 + _ONE, y]
            s1 = a1 * p[r1, y] + b1 * p[r1 + _ONE, y]
            s2 = a2 * p[r2, y] + b2 * p[r2 + _ONE, y]
            s3 = a3 * p[r3, y] + b3 * p[r3 + _ONE, y]
            acc[j, y] += (s0 + s1) + (s2 + s3)


@numba.njit(inline="always", cache=True, fastmath=True)
def _accumulate_1(p, acc, rows, a_w, b_w, nxb, sy):
    """acc[j, :] += a_w p[row] + b_w p[row + 1] for tilt slot 0 (the remainder tilts)."""
    for j in range(nxb):
        r0 = rows[0, j]
        a0 = a_w[0, j]
        b0 = b_w[0, j]
        for y in range(sy):
            acc[j, y] += a0 * p[r0, y] + b0 * p[r0 + _ONE, y]


@numba.njit(parallel=True, cache=True, fastmath=True)
def _backproject_tiles(proj_tuy, cos_t, sin_t, weights, nz, nx, out_zyx, tile_x):
    """Body of :func:`backproject_slab` (inputs validated): parallel over (z, x-tile) tiles."""
    n_t, nu_pad, sy = proj_tuy.shape
    p = proj_tuy.reshape(n_t * nu_pad, sy)
    nu = nu_pad - 2
    cz = nz // 2
    cx = nx // 2
    cu = np.float32(nu // 2)
    n_xt = (nx + tile_x - 1) // tile_x
    for tile in numba.prange(nz * n_xt):
        iz = tile // n_xt
        x0 = (tile % n_xt) * tile_x
        nxb = min(tile_x, nx - x0)
        z_px = np.float32(iz - cz)
        acc = np.zeros((tile_x, sy), np.float32)
        rows = np.empty((TILT_GROUP, tile_x), np.uint32)
        a_w = np.empty((TILT_GROUP, tile_x), np.float32)
        b_w = np.empty((TILT_GROUP, tile_x), np.float32)
        t0 = 0
        while t0 < n_t:
            g = TILT_GROUP if t0 + TILT_GROUP <= n_t else 1
            for k in range(g):
                t = t0 + k
                _interp_coefficients(t, nu_pad, cos_t[t], sin_t[t], weights[t], z_px, x0, nxb, cx, cu,
                                     rows, a_w, b_w, k)
            if g == TILT_GROUP:
                _accumulate_4(p, acc, rows, a_w, b_w, nxb, sy)
            else:
                _accumulate_1(p, acc, rows, a_w, b_w, nxb, sy)
            t0 += g
        for y in range(sy):
            for j in range(nxb):
                out_zyx[iz, y, x0 + j] = acc[j, y]


@numba.njit(parallel=True, cache=True)
def pack_row_pairs(rows_tyu, work):
    """Pack pairs of real rows into complex rows for the filter: ``work = rows[2k] + i rows[2k + 1]``.

    ``work`` is the float32 view (interleaved real, imaginary) of a complex64
    (n, (sy + 1) // 2, n_padded) workspace: row pair k of tilt t goes to
    ``work[t, k, 0:2 nu]`` (real parts at even, imaginary at odd positions);
    the rest of the row (the zero padding) is zeroed, as is the imaginary part
    of the last pair when sy is odd. Parallel over (tilt, row pair).

    Parameters
    ----------
    rows_tyu : np.ndarray
        (n, sy, nu) float32 rows (u contiguous or not).
    work : np.ndarray
        (>= n, >= (sy + 1) // 2, 2 n_padded) float32, n_padded >= nu.
    """
    n, sy, nu = rows_tyu.shape
    n_pairs = (sy + 1) // 2
    width = work.shape[2]
    for job in numba.prange(n * n_pairs):
        t = job // n_pairs
        k = job % n_pairs
        y = 2 * k
        for u in range(nu):
            work[t, k, 2 * u] = rows_tyu[t, y, u]
        if y + 1 < sy:
            for u in range(nu):
                work[t, k, 2 * u + 1] = rows_tyu[t, y + 1, u]
        else:
            for u in range(nu):
                work[t, k, 2 * u + 1] = 0.0
        for i in range(2 * nu, width):
            work[t, k, i] = 0.0


@numba.njit(parallel=True, cache=True)
def unpack_row_pairs(work, nu, sy, proj_tuy, t0):
    """Unpack filtered complex row pairs into the kernel layout (inverse of :func:`pack_row_pairs`).

    ``proj[t0 + t, 1 + u, 2k] = work[t, k, 2u]`` (real part) and
    ``proj[t0 + t, 1 + u, 2k + 1] = work[t, k, 2u + 1]`` (imaginary part), for
    u < nu; also zeroes the padding columns ``proj[t0 + t, 0, :]`` and
    ``proj[t0 + t, nu + 1, :]``. Parallel over (tilt, block of 8 columns).

    Parameters
    ----------
    work : np.ndarray
        (n, (sy + 1) // 2, >= 2 nu) float32 view of the filtered complex rows.
    nu, sy : int
        Detector width and number of rows (pixels).
    proj_tuy : np.ndarray
        (n_tilts, nu + 2, sy) float32 kernel layout, written for tilts t0..t0+n.
    t0 : int
        First tilt written.
    """
    n = work.shape[0]
    n_pairs = (sy + 1) // 2
    n_ub = (nu + 7) // 8
    for job in numba.prange(n * n_ub):
        t = job // n_ub
        u0 = (job % n_ub) * 8
        u1 = min(nu, u0 + 8)
        if u0 == 0:
            for y in range(sy):
                proj_tuy[t0 + t, 0, y] = 0.0
        if u1 == nu:
            for y in range(sy):
                proj_tuy[t0 + t, nu + 1, y] = 0.0
        for u in range(u0, u1):
            for k in range(sy // 2):
                proj_tuy[t0 + t, u + 1, 2 * k] = work[t, k, 2 * u]
                proj_tuy[t0 + t, u + 1, 2 * k + 1] = work[t, k, 2 * u + 1]
            if sy % 2:
                proj_tuy[t0 + t, u + 1, sy - 1] = work[t, n_pairs - 1, 2 * u]


def backproject_slab(proj_tuy, cos_t, sin_t, weights, nz: int, nx: int, out_zyx, tile_x: int | None = None) -> None:
    """Linearly interpolated back-projection of one y-slab, written into ``out_zyx``.

    ``out[iz, y, ix] = sum_t w_t * P_t(u, y)`` with ``u = detector_u(ix - nx//2,
    iz - nz//2, cos t, sin t, nu//2)`` and ``P_t(u, y)`` the linear
    interpolation of the filtered projection between columns ``floor(u)`` and
    ``floor(u) + 1`` (zero outside the detector).

    Parameters
    ----------
    proj_tuy : np.ndarray
        (n_tilts, nu + 2, sy) float32 C-contiguous filtered projections,
        transposed so that y is contiguous, with one zero column of padding at
        each end of u (detector column ``iu`` is stored at index ``iu + 1``).
    cos_t, sin_t, weights : np.ndarray
        (n_tilts,) float32 cosines, sines and angular weights of the tilts.
    nz, nx : int
        Volume thickness and width (pixels).
    out_zyx : np.ndarray
        (nz, sy, nx) float32 array (any strides, e.g. the y-slab
        ``volume[:, y0:y1, :]`` of the output); overwritten.
    tile_x : int, optional
        Width in x of the work unit of one thread (performance only; the
        result does not depend on it). Default: the whole width, at most
        ``32768 // sy`` (a 128 KB accumulator, kept in L2).
    """
    proj = np.ascontiguousarray(proj_tuy, dtype=np.float32)
    n_t, nu_pad, sy = proj.shape
    if nu_pad < 3:
        raise ValueError(f"proj_tuy must be (n_tilts, nu + 2, sy) with nu >= 1, got shape {proj.shape}")
    cos_t, sin_t, weights = (np.ascontiguousarray(a, dtype=np.float32).ravel() for a in (cos_t, sin_t, weights))
    if not cos_t.size == sin_t.size == weights.size == n_t:
        raise ValueError(f"cos_t, sin_t and weights must have {n_t} values (one per tilt)")
    if not isinstance(out_zyx, np.ndarray):
        raise ValueError("out_zyx must be a numpy array")
    out_zyx = np.asarray(out_zyx)  # a plain view of a memmap (numba types ndarray only)
    if out_zyx.dtype != np.float32 or tuple(out_zyx.shape) != (int(nz), sy, int(nx)):
        raise ValueError(f"out_zyx must be float32 of shape {(int(nz), sy, int(nx))}, "
                         f"got {out_zyx.dtype} {out_zyx.shape}")
    if n_t * nu_pad >= 2**32:
        raise ValueError("too many projection rows for 32-bit row indices")
    if tile_x is None:
        tile_x = min(int(nx), 32768 // sy)
    _backproject_tiles(proj, cos_t, sin_t, weights, int(nz), int(nx), out_zyx, max(1, int(tile_x)))
