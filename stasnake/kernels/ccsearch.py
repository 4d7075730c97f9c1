"""Numba kernels of the wedge-constrained cross-correlation search (:mod:`stasnake.sta.align`).

One *candidate* is a (particle, orientation ``R``) pair. For every candidate the
kernel

1. samples the oversampled reference spectrum at ``R^T k`` for each Fourier
   pixel ``k`` of a compact list (trilinear, complex), multiplies it by the
   particle's prepared spectrum ``Q(k) = w_k M(k)^2 P(k)`` (``M`` = wedge x
   band-pass, ``w_k = 2`` the Hermitian multiplicity: the list holds one of
   each pair k, -k) and scatters ``conj(T(k)) Q(k)`` into a small dense cube;
   it also sums ``||T'||^2 = sum w M^2 |T|^2``. Pixels in the particle's
   missing wedge (``M = 0``) are skipped;
2. evaluates ``X(s) = Re sum_k conj(T(k)) Q(k) exp(2 pi i k.s / n)`` on a small
   window of shifts by a separable pruned inverse DFT: kx first (inner loops
   over the contiguous (ky, kz) rows that hold list pixels), then ky (inner
   loops over contiguous kz runs) and kz (short dot products);
3. takes the maximum of ``X`` over the valid (ellipsoid) window points and
   refines it by Newton iterations on ``log X`` (value, gradient and Hessian
   are the same separable DFT with a 3 x 3 x 3 "window" of derivative
   factors): subpixel shift and peak value (interpolating between window
   points is far too coarse to rank orientations); the result is kept inside
   the ellipsoid and divided by ``||T'|| ||P'||``.

Layouts and units (built by :mod:`stasnake.sta.align`):

* reference cube: complex64 ``(S, S, S)``, index ``[qz + Q, qy + Q, qx + Q]``
  where ``q = 2 k`` (2x oversampled Fourier pixels) and ``Q = centre``; values
  are the centred spectrum (origin at the box centre) of the masked,
  gridding-corrected reference;
* ``k_xyz``: (L, 3) float32 Fourier pixels (cycles per box) ``(kx, ky, kz)``,
  ``kx >= 0``; ``cell``: (L,) int32 flat index into the dense cube
  ``[kx, ky + K, kz + K]`` of shape ``(K + 1, 2K + 1, 2K + 1)``;
* window: ``e_x[kx, jx] = exp(2 pi i kx s_x(jx) / n)``, ``e_y[jy, ky + K]``,
  ``e_z[jz, kz + K]`` with ``s(j) = (j - J) * step`` full-size pixels about
  the particle's shift centre (folded into ``Q``), ``valid[jz, jy, jx]`` the
  points inside the ellipsoid;
* output per candidate: normalised CC and the peak shift ``(x, y, z)`` in
  full-size pixels relative to the window centre.

Speed on the 2-core machine: all arithmetic float32, unsigned indices (no
wrap-around checks), contiguous inner loops; parallel over blocks of
candidates (each thread owns its scratch arrays).

The per-element maths (:func:`sample_trilinear`, :func:`newton_step`,
:func:`clip_to_ellipsoid`) are plain Python functions wrapped by
``numba.njit`` here and by ``numba.cuda.jit(device=True)`` in
:mod:`stasnake.kernels.ccsearch_cuda`, so both devices compute them identically.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

NEWTON_ITERATIONS = 2  # from the grid maximum; then the CC is evaluated at the refined shift
_U = numba.uint64


class ReferenceArrays(NamedTuple):
    """Per-reference constants of the search (see the module docstring for layouts).

    Attributes
    ----------
    cube : np.ndarray
        (S, S, S) complex64 oversampled spectrum.
    centre : int
        Cube index of ``q = 0`` on each axis.
    k_xyz : np.ndarray
        (L, 3) float32 Fourier pixels of the compact list.
    cell : np.ndarray
        (L,) int32 flat index of each k in the dense cube ``[kx, ky + K, kz + K]``
        of shape ``(K+1, 2K+1, 2K+1)``.
    span_lo, span_hi : np.ndarray
        (K+1,) int32 first and one-past-last index, within a (ky, kz) plane of
        ``(2K+1)^2``, of the rows holding list pixels at each kx.
    kz_lo, kz_hi : np.ndarray
        (2K+1,) int32 first and one-past-last ``kz + K`` of the list pixels in
        each ``ky + K`` row (any kx).
    k_max : int
        K.
    """

    cube: np.ndarray
    centre: int
    k_xyz: np.ndarray
    cell: np.ndarray
    span_lo: np.ndarray
    span_hi: np.ndarray
    kz_lo: np.ndarray
    kz_hi: np.ndarray
    k_max: int


class WindowArrays(NamedTuple):
    """Separable inverse-DFT factors of a shift window.

    Attributes
    ----------
    ex_re, ex_im : np.ndarray
        (K+1, Wx) float32 ``exp(2 pi i kx s_x / n)``.
    ey_re, ey_im : np.ndarray
        (Wy, 2K+1) float32, column ``ky + K``.
    ez_re, ez_im : np.ndarray
        (Wz, 2K+1) float32, column ``kz + K``.
    valid : np.ndarray
        (Wz, Wy, Wx) bool, the points where the peak may be.
    step_px : float
        Shift between neighbouring window points, full-size pixels.
    box : int
        Full box side n (the ``n`` of the phases).
    inv_axes2 : tuple of float
        ``1 / a_i^2`` of the allowed ellipsoid's semi-axes (pixels^-2) along x, y, z
        (0: unlimited, a huge number: no shift along that axis); the refined
        peak is kept inside it.
    """

    ex_re: np.ndarray
    ex_im: np.ndarray
    ey_re: np.ndarray
    ey_im: np.ndarray
    ez_re: np.ndarray
    ez_im: np.ndarray
    valid: np.ndarray
    step_px: float
    box: int
    inv_axes2: tuple[float, float, float] = (0.0, 0.0, 0.0)


class ParticleArrays(NamedTuple):
    """Prepared particle spectra on the compact list.

    Attributes
    ----------
    q_re, q_im : np.ndarray
        (P, L) float32 ``w M^2 P(k) exp(2 pi i k.c_s / n)``.
    m2w : np.ndarray
        (P, L) float32 ``w M^2``.
    p_norm : np.ndarray
        (P,) float32 ``||P'|| = sqrt(sum w M^2 |P|^2)``.
    """

    q_re: np.ndarray
    q_im: np.ndarray
    m2w: np.ndarray
    p_norm: np.ndarray


def sample_trilinear(cube, s1, s2, x, y, z):
    """Trilinear sample of a flattened complex (S, S, S) cube at fractional (x, y, z) >= 0; no bounds check.

    ``s1 = S`` and ``s2 = S * S`` are unsigned strides; indices are unsigned and
    the weights float32 (no wrap-around checks, no float64 promotion).
    """
    one = np.float32(1.0)
    u1 = _U(1)
    x0 = _U(x)  # positive: truncation is floor
    y0 = _U(y)
    z0 = _U(z)
    fx = x - np.float32(x0)
    fy = y - np.float32(y0)
    fz = z - np.float32(z0)
    gx = one - fx
    gy = one - fy
    gz = one - fz
    b = z0 * s2 + y0 * s1 + x0
    c00 = cube[b] * gx + cube[b + u1] * fx
    c01 = cube[b + s1] * gx + cube[b + s1 + u1] * fx
    c10 = cube[b + s2] * gx + cube[b + s2 + u1] * fx
    c11 = cube[b + s2 + s1] * gx + cube[b + s2 + s1 + u1] * fx
    return (c00 * gy + c01 * fy) * gz + (c10 * gy + c11 * fy) * fz


def newton_step(f, gx, gy, gz, hxx, hxy, hxz, hyy, hyz, hzz, max_step):
    """Step (dx, dy, dz) toward the maximum of a peak from its value, gradient and Hessian there.

    For ``f > 0`` the step is Newton's on ``log f`` (exact for a Gaussian peak,
    so far from the top it neither overshoots nor stalls), otherwise on ``f``.
    When the Hessian is not negative definite each axis steps alone (or not at
    all); every component is clamped to ``[-max_step, max_step]``.
    """
    if f > 0.0:
        inv = 1.0 / f
        gx *= inv
        gy *= inv
        gz *= inv
        hxx = hxx * inv - gx * gx
        hxy = hxy * inv - gx * gy
        hxz = hxz * inv - gx * gz
        hyy = hyy * inv - gy * gy
        hyz = hyz * inv - gy * gz
        hzz = hzz * inv - gz * gz
    # solve A d = g with A = -H (positive definite at a maximum)
    a11, a12, a13, a22, a23, a33 = -hxx, -hxy, -hxz, -hyy, -hyz, -hzz
    c11 = a22 * a33 - a23 * a23
    c12 = a13 * a23 - a12 * a33
    c13 = a12 * a23 - a13 * a22
    det = a11 * c11 + a12 * c12 + a13 * c13
    if a11 > 0.0 and a11 * a22 - a12 * a12 > 0.0 and det > 0.0:
        c22 = a11 * a33 - a13 * a13
        c23 = a12 * a13 - a11 * a23
        c33 = a11 * a22 - a12 * a12
        dx = (c11 * gx + c12 * gy + c13 * gz) / det
        dy = (c12 * gx + c22 * gy + c23 * gz) / det
        dz = (c13 * gx + c23 * gy + c33 * gz) / det
    else:
        dx = gx / a11 if a11 > 0.0 else 0.0
        dy = gy / a22 if a22 > 0.0 else 0.0
        dz = gz / a33 if a33 > 0.0 else 0.0
    dx = min(max_step, max(-max_step, dx))
    dy = min(max_step, max(-max_step, dy))
    dz = min(max_step, max(-max_step, dz))
    return dx, dy, dz


def clip_to_ellipsoid(gx, gy, gz, x, y, z, ix2, iy2, iz2):
    """Pull (x, y, z) back along the segment from (gx, gy, gz) (inside) to the ellipsoid surface.

    The ellipsoid is ``x^2 ix2 + y^2 iy2 + z^2 iz2 <= 1`` (coefficients 0 for an
    unlimited axis); points inside are returned unchanged.
    """
    if x * x * ix2 + y * y * iy2 + z * z * iz2 <= 1.0:
        return x, y, z
    dx = x - gx
    dy = y - gy
    dz = z - gz
    a = dx * dx * ix2 + dy * dy * iy2 + dz * dz * iz2
    b = gx * dx * ix2 + gy * dy * iy2 + gz * dz * iz2
    c = gx * gx * ix2 + gy * gy * iy2 + gz * gz * iz2 - 1.0
    t = 0.0
    if a > 0.0 and c < 0.0:
        t = (-b + math.sqrt(max(0.0, b * b - a * c))) / a
        t = min(1.0, max(0.0, t))
    return gx + t * dx, gy + t * dy, gz + t * dz


_sample = numba.njit(inline="always", cache=True, fastmath=True)(sample_trilinear)
_newton_step = numba.njit(inline="always", cache=True, fastmath=True)(newton_step)
_clip = numba.njit(inline="always", cache=True, fastmath=True)(clip_to_ellipsoid)


@numba.njit(cache=True, fastmath=True)
def _fill_spectrum(cube, side, centre, k_xyz, cell, r, qr_p, qi_p, m2w_p, d_re, d_im):
    """Step 1 for one candidate: dense cube of ``conj(T) Q`` and ``||T'||^2``.

    ``cube`` is the flattened (S, S, S) spectrum; indices are unsigned (no
    wrap-around checks) and the maths float32, which is what makes it fast.
    """
    two = np.float32(2.0)
    # q = 2 R^T k + centre, (R^T k)_i = sum_j R[j, i] k_j
    a00, a01, a02 = two * r[0, 0], two * r[1, 0], two * r[2, 0]
    a10, a11, a12 = two * r[0, 1], two * r[1, 1], two * r[2, 1]
    a20, a21, a22 = two * r[0, 2], two * r[1, 2], two * r[2, 2]
    s1 = _U(side)
    s2 = _U(side * side)
    t_norm = 0.0
    for i in range(k_xyz.shape[0]):
        c = _U(cell[i])
        m = m2w_p[i]
        if m == 0.0:  # in the particle's missing wedge
            d_re[c] = 0.0
            d_im[c] = 0.0
            continue
        kx = k_xyz[i, 0]
        ky = k_xyz[i, 1]
        kz = k_xyz[i, 2]
        t = _sample(
            cube,
            s1,
            s2,
            a00 * kx + a01 * ky + a02 * kz + centre,
            a10 * kx + a11 * ky + a12 * kz + centre,
            a20 * kx + a21 * ky + a22 * kz + centre,
        )
        tr = t.real
        ti = t.imag
        qr = qr_p[i]
        qi = qi_p[i]
        d_re[c] = tr * qr + ti * qi  # conj(t) * q
        d_im[c] = tr * qi - ti * qr
        t_norm += m * (tr * tr + ti * ti)
    return t_norm


@numba.njit(cache=True, fastmath=True)
def _separable_dft(
    d_re,
    d_im,
    span_lo,
    span_hi,
    kz_lo,
    kz_hi,
    ex_re,
    ex_im,
    ey_re,
    ey_im,
    ez_re,
    ez_im,
    a_re,
    a_im,
    b_re,
    b_im,
    out,
):
    """``out[jz, jy, jx] = Re sum_k d[kx, ky, kz] ex[kx, jx] ey[jy, ky] ez[jz, kz]`` (pruned, separable).

    ``d`` is the flat dense cube ``[kx, ky + K, kz + K]``; the work arrays
    ``a`` (>= Wx (2K+1)^2) and ``b`` (>= Wx Wy (2K+1)) are overwritten.
    Every inner loop runs over contiguous memory (vectorised).
    """
    nkx, wx = ex_re.shape
    wy, dy = ey_re.shape
    wz, dz = ez_re.shape
    plane = dy * dz
    a_re[: wx * plane] = 0.0
    a_im[: wx * plane] = 0.0
    for kx in range(nkx):  # kx -> sx: a[jx, ky, kz]
        lo = _U(span_lo[kx])
        n = _U(span_hi[kx]) - lo
        db = _U(kx * plane) + lo
        for jx in range(wx):
            er = ex_re[kx, jx]
            ei = ex_im[kx, jx]
            ab = _U(jx * plane) + lo
            for t in range(n):
                dr = d_re[db + t]
                di = d_im[db + t]
                a_re[ab + t] += dr * er - di * ei
                a_im[ab + t] += dr * ei + di * er
    b_re[: wx * wy * dz] = 0.0
    b_im[: wx * wy * dz] = 0.0
    for jx in range(wx):  # ky -> sy: b[jx, jy, kz]
        for jy in range(wy):
            bb = _U((jx * wy + jy) * dz)
            for ky in range(dy):
                lo = _U(kz_lo[ky])
                n = _U(kz_hi[ky]) - lo
                er = ey_re[jy, ky]
                ei = ey_im[jy, ky]
                ab = _U(jx * plane + ky * dz) + lo
                ob = bb + lo
                for t in range(n):
                    ar = a_re[ab + t]
                    ai = a_im[ab + t]
                    b_re[ob + t] += ar * er - ai * ei
                    b_im[ob + t] += ar * ei + ai * er
    for jx in range(wx):  # kz -> sz, real part only
        for jy in range(wy):
            bb = _U((jx * wy + jy) * dz)
            for jz in range(wz):
                acc = np.float32(0.0)
                for kz in range(dz):
                    acc += b_re[bb + kz] * ez_re[jz, kz] - b_im[bb + kz] * ez_im[jz, kz]
                out[jz, jy, jx] = acc


@numba.njit(cache=True, fastmath=True)
def _grid_peak(cc, valid):
    """Index (jx, jy, jz) and value of the maximum of ``cc`` over ``valid``."""
    wz, wy, wx = cc.shape
    best = -np.inf
    bz = by = bx = 0
    for jz in range(wz):
        for jy in range(wy):
            for jx in range(wx):
                if valid[jz, jy, jx] and cc[jz, jy, jx] > best:
                    best = cc[jz, jy, jx]
                    bz, by, bx = jz, jy, jx
    return bx, by, bz, best


@numba.njit(inline="always", cache=True, fastmath=True)
def _derivative_factors(s, two_pi_n, k0, e_re, e_im, transpose):
    """``e[k, j] = (2 pi i k / n)^j exp(2 pi i k s / n)`` for ``k = k0 + index``, j = 0, 1, 2.

    Stored as ``e[k, j]`` (``transpose`` False) or ``e[j, k]``.
    """
    nk = e_re.shape[1] if transpose else e_re.shape[0]
    for i in range(nk):
        k = k0 + i
        w = two_pi_n * k
        c = math.cos(w * s)
        sn = math.sin(w * s)
        vals_re = (c, -w * sn, -w * w * c)
        vals_im = (sn, w * c, -w * w * sn)
        for j in range(3):
            if transpose:
                e_re[j, i] = vals_re[j]
                e_im[j, i] = vals_im[j]
            else:
                e_re[i, j] = vals_re[j]
                e_im[i, j] = vals_im[j]


@numba.njit(cache=True, fastmath=True)
def _refine_peak(
    d_re,
    d_im,
    span_lo,
    span_hi,
    kz_lo,
    kz_hi,
    k_max,
    sx,
    sy,
    sz,
    f0,
    two_pi_n,
    step,
    inv_axes2,
    fx_re,
    fx_im,
    fy_re,
    fy_im,
    fz_re,
    fz_im,
    a_re,
    a_im,
    b_re,
    b_im,
    out,
):
    """Newton iterations on ``log X`` from the grid maximum; returns (value, sx, sy, sz) in pixels.

    Value, gradient and Hessian at a shift are the separable DFT of the dense
    cube with the factors ``exp``, its first and second derivatives per axis
    (a 3 x 3 x 3 "window" of derivative orders).
    """
    x, y, z = sx, sy, sz
    for _ in range(NEWTON_ITERATIONS):
        _derivative_factors(x, two_pi_n, 0, fx_re, fx_im, False)
        _derivative_factors(y, two_pi_n, -k_max, fy_re, fy_im, True)
        _derivative_factors(z, two_pi_n, -k_max, fz_re, fz_im, True)
        _separable_dft(
            d_re,
            d_im,
            span_lo,
            span_hi,
            kz_lo,
            kz_hi,
            fx_re,
            fx_im,
            fy_re,
            fy_im,
            fz_re,
            fz_im,
            a_re,
            a_im,
            b_re,
            b_im,
            out,
        )
        dx, dy, dz = _newton_step(
            out[0, 0, 0],
            out[0, 0, 1],
            out[0, 1, 0],
            out[1, 0, 0],
            out[0, 0, 2],
            out[0, 1, 1],
            out[1, 0, 1],
            out[0, 2, 0],
            out[1, 1, 0],
            out[2, 0, 0],
            step,
        )
        x = min(sx + step, max(sx - step, x + dx))
        y = min(sy + step, max(sy - step, y + dy))
        z = min(sz + step, max(sz - step, z + dz))
    x, y, z = _clip(sx, sy, sz, x, y, z, inv_axes2[0], inv_axes2[1], inv_axes2[2])
    # the value alone at the refined shift: one-column factors (C-contiguous copies: one compiled DFT)
    _derivative_factors(x, two_pi_n, 0, fx_re, fx_im, False)
    _derivative_factors(y, two_pi_n, -k_max, fy_re, fy_im, True)
    _derivative_factors(z, two_pi_n, -k_max, fz_re, fz_im, True)
    gx_re = np.ascontiguousarray(fx_re[:, :1])
    gx_im = np.ascontiguousarray(fx_im[:, :1])
    gy_re = np.ascontiguousarray(fy_re[:1])
    gy_im = np.ascontiguousarray(fy_im[:1])
    gz_re = np.ascontiguousarray(fz_re[:1])
    gz_im = np.ascontiguousarray(fz_im[:1])
    _separable_dft(
        d_re,
        d_im,
        span_lo,
        span_hi,
        kz_lo,
        kz_hi,
        gx_re,
        gx_im,
        gy_re,
        gy_im,
        gz_re,
        gz_im,
        a_re,
        a_im,
        b_re,
        b_im,
        out,
    )
    f = out[0, 0, 0]
    if f < f0:
        return f0, sx, sy, sz
    return f, x, y, z


@numba.njit(cache=True, fastmath=True)
def _score_range(
    c0,
    c1,
    cube,
    side,
    centre,
    k_xyz,
    cell,
    span_lo,
    span_hi,
    kz_lo,
    kz_hi,
    ex_re,
    ex_im,
    ey_re,
    ey_im,
    ez_re,
    ez_im,
    valid,
    step,
    box,
    inv_axes2,
    q_re,
    q_im,
    m2w,
    p_norm,
    rotations,
    particle_of,
    refine,
    out_cc,
    out_offset,
):
    """Candidates ``c0 .. c1 - 1`` (one thread's share); see :func:`score_candidates`."""
    nkx, wx = ex_re.shape
    wy, dz = ey_re.shape
    wz = ez_re.shape[0]
    k_max = nkx - 1
    plane = dz * dz
    two_pi_n = 2.0 * np.pi / box
    cen = np.float32(centre)
    wx3 = max(wx, 3)
    wy3 = max(wy, 3)
    d_re = np.zeros(nkx * plane, np.float32)
    d_im = np.zeros(nkx * plane, np.float32)
    a_re = np.empty(wx3 * plane, np.float32)
    a_im = np.empty(wx3 * plane, np.float32)
    b_re = np.empty(wx3 * wy3 * dz, np.float32)
    b_im = np.empty(wx3 * wy3 * dz, np.float32)
    cc = np.empty((wz, wy, wx), np.float32)
    fx_re = np.empty((nkx, 3), np.float32)
    fx_im = np.empty((nkx, 3), np.float32)
    fy_re = np.empty((3, dz), np.float32)
    fy_im = np.empty((3, dz), np.float32)
    fz_re = np.empty((3, dz), np.float32)
    fz_im = np.empty((3, dz), np.float32)
    out3 = np.empty((3, 3, 3), np.float32)
    rot = np.empty((3, 3), np.float32)
    for c in range(c0, c1):
        p = particle_of[c]
        for i in range(3):
            for j in range(3):
                rot[i, j] = rotations[c, i, j]
        t_norm = _fill_spectrum(
            cube, side, cen, k_xyz, cell, rot, q_re[p], q_im[p], m2w[p], d_re, d_im
        )
        _separable_dft(
            d_re,
            d_im,
            span_lo,
            span_hi,
            kz_lo,
            kz_hi,
            ex_re,
            ex_im,
            ey_re,
            ey_im,
            ez_re,
            ez_im,
            a_re,
            a_im,
            b_re,
            b_im,
            cc,
        )
        jx, jy, jz, value = _grid_peak(cc, valid)
        sx = (jx - (wx - 1) // 2) * step
        sy = (jy - (wy - 1) // 2) * step
        sz = (jz - (wz - 1) // 2) * step
        if refine:
            value, sx, sy, sz = _refine_peak(
                d_re,
                d_im,
                span_lo,
                span_hi,
                kz_lo,
                kz_hi,
                k_max,
                sx,
                sy,
                sz,
                value,
                two_pi_n,
                step,
                inv_axes2,
                fx_re,
                fx_im,
                fy_re,
                fy_im,
                fz_re,
                fz_im,
                a_re,
                a_im,
                b_re,
                b_im,
                out3,
            )
        denom = math.sqrt(t_norm) * p_norm[p]
        out_cc[c] = value / denom if denom > 0.0 else 0.0
        out_offset[c, 0] = sx
        out_offset[c, 1] = sy
        out_offset[c, 2] = sz


@numba.njit(parallel=True, cache=True)
def _score_candidates_cpu(
    cube,
    side,
    centre,
    k_xyz,
    cell,
    span_lo,
    span_hi,
    kz_lo,
    kz_hi,
    ex_re,
    ex_im,
    ey_re,
    ey_im,
    ez_re,
    ez_im,
    valid,
    step,
    box,
    inv_axes2,
    q_re,
    q_im,
    m2w,
    p_norm,
    rotations,
    particle_of,
    refine,
    out_cc,
    out_offset,
    n_blocks,
):
    n_cand = rotations.shape[0]
    for blk in numba.prange(n_blocks):
        _score_range(
            blk * n_cand // n_blocks,
            (blk + 1) * n_cand // n_blocks,
            cube,
            side,
            centre,
            k_xyz,
            cell,
            span_lo,
            span_hi,
            kz_lo,
            kz_hi,
            ex_re,
            ex_im,
            ey_re,
            ey_im,
            ez_re,
            ez_im,
            valid,
            step,
            box,
            inv_axes2,
            q_re,
            q_im,
            m2w,
            p_norm,
            rotations,
            particle_of,
            refine,
            out_cc,
            out_offset,
        )


def score_candidates(
    ref: ReferenceArrays,
    window: WindowArrays,
    particles: ParticleArrays,
    rotations,
    particle_of,
    device: str = "cpu",
    refine: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Best normalised CC over the shift window of each (particle, orientation) candidate.

    Parameters
    ----------
    ref : ReferenceArrays
        The prepared reference spectrum and compact k-list.
    window : WindowArrays
        The shift window (same for all particles; each particle's centre is in its ``q``).
    particles : ParticleArrays
        Prepared spectra of P particles.
    rotations : array_like
        (C, 3, 3) active poses ``R`` (reference -> tomogram) on (x, y, z) vectors.
    particle_of : array_like
        (C,) int index into ``particles`` of each candidate.
    device : {"cpu", "cuda"}
        Numba CPU kernel (parallel over candidates) or the CUDA twin.
    refine : bool
        Refine the grid maximum by Newton iterations on the analytic gradient and
        Hessian of the CC (subpixel shift and peak value); False keeps the grid value.

    Returns
    -------
    cc : np.ndarray
        (C,) float32 normalised CC at the peak.
    offsets : np.ndarray
        (C, 3) float32 (x, y, z) peak shift in full-size pixels from the window centre.
    """
    rot = np.ascontiguousarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    part = np.ascontiguousarray(particle_of, dtype=np.int32).ravel()
    if len(part) != len(rot):
        raise ValueError(f"{len(rot)} rotations but {len(part)} particle indices")
    if device == "cuda":
        from stasnake.kernels.ccsearch_cuda import score_candidates_cuda

        return score_candidates_cuda(ref, window, particles, rot, part, refine)
    if device != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")
    out_cc = np.empty(len(rot), np.float32)
    out_off = np.empty((len(rot), 3), np.float32)
    if len(rot) == 0:
        return out_cc, out_off
    n_blocks = max(1, min(len(rot), 4 * numba.get_num_threads()))
    _score_candidates_cpu(
        ref.cube.reshape(-1),
        ref.cube.shape[0],
        ref.centre,
        ref.k_xyz,
        ref.cell,
        ref.span_lo,
        ref.span_hi,
        ref.kz_lo,
        ref.kz_hi,
        *window[:7],
        float(window.step_px),
        float(window.box),
        np.asarray(window.inv_axes2, np.float64),
        particles.q_re,
        particles.q_im,
        particles.m2w,
        particles.p_norm,
        rot,
        part,
        bool(refine),
        out_cc,
        out_off,
        n_blocks,
    )
    return out_cc, out_off
