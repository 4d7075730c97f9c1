"""CUDA twins (numba.cuda) of the cross-correlation search kernels in :mod:`stasnake.kernels.ccsearch`.

Two kernels, one thread block per candidate (particle, orientation):

* :func:`_fill_kernel` (step 1): zeroes the candidate's dense cube, samples the
  oversampled reference spectrum at ``R^T k`` for every compact-list pixel
  (threads stride over the list) and writes ``conj(T) Q``; the block reduces
  ``||T'||^2`` in shared memory.
* :func:`_window_kernel` (steps 2-3): the separable pruned inverse DFT onto
  the shift window (each stage a block-wide loop over its outputs, with
  ``syncthreads`` between stages, work arrays in global memory), the maximum
  over the valid window points (shared-memory argmax reduction), then the
  Newton refinement of the peak: value, gradient and Hessian are block
  reductions of direct sums over the list, the step is
  :func:`stasnake.kernels.ccsearch.newton_step` on thread 0.

The trilinear sample and the Newton step are the same Python functions as on
the CPU (``cuda.jit(device=True)`` here); the DFT stages and the derivative
sums are written for the GPU, so CPU and CUDA agree to float32 rounding.

Without a GPU, numba's CUDA simulator runs these kernels (slowly) when
``NUMBA_ENABLE_CUDASIM=1`` is set before numba is first imported.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import cuda  # module global: the simulator swaps it inside kernels

from stasnake.kernels.backproject_cuda import require_cuda
from stasnake.kernels.ccsearch import (
    NEWTON_ITERATIONS,
    ParticleArrays,
    ReferenceArrays,
    WindowArrays,
    clip_to_ellipsoid,
    newton_step,
    sample_trilinear,
)

THREADS = 128  # threads per block (one block per candidate)
CHUNK = 1024  # candidates per launch (bounds the work arrays in GPU memory)


@functools.cache
def _kernels():
    """Compile (lazily, once) and return the two CUDA kernels."""
    sample = cuda.jit(device=True)(sample_trilinear)
    step_fn = cuda.jit(device=True)(newton_step)
    clip = cuda.jit(device=True)(clip_to_ellipsoid)

    @cuda.jit
    def fill_kernel(
        cube, side, centre, k_xyz, cell, q_re, q_im, m2w, rotations, particle_of, d_re, d_im, t_norm
    ):
        c = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        if c >= rotations.shape[0]:
            return
        partial = cuda.shared.array(THREADS, numba.float64)
        for i in range(tid, d_re.shape[1], THREADS):
            d_re[c, i] = 0.0
            d_im[c, i] = 0.0
        cuda.syncthreads()
        p = particle_of[c]
        two = np.float32(2.0)
        a00 = two * np.float32(rotations[c, 0, 0])
        a01 = two * np.float32(rotations[c, 1, 0])
        a02 = two * np.float32(rotations[c, 2, 0])
        a10 = two * np.float32(rotations[c, 0, 1])
        a11 = two * np.float32(rotations[c, 1, 1])
        a12 = two * np.float32(rotations[c, 2, 1])
        a20 = two * np.float32(rotations[c, 0, 2])
        a21 = two * np.float32(rotations[c, 1, 2])
        a22 = two * np.float32(rotations[c, 2, 2])
        cen = np.float32(centre)
        s1 = numba.uint64(side)
        s2 = numba.uint64(side * side)
        acc = 0.0
        for i in range(tid, k_xyz.shape[0], THREADS):
            m = m2w[p, i]
            if m == 0.0:
                continue
            kx = k_xyz[i, 0]
            ky = k_xyz[i, 1]
            kz = k_xyz[i, 2]
            t = sample(
                cube,
                s1,
                s2,
                a00 * kx + a01 * ky + a02 * kz + cen,
                a10 * kx + a11 * ky + a12 * kz + cen,
                a20 * kx + a21 * ky + a22 * kz + cen,
            )
            tr = t.real
            ti = t.imag
            qr = q_re[p, i]
            qi = q_im[p, i]
            d_re[c, cell[i]] = tr * qr + ti * qi
            d_im[c, cell[i]] = tr * qi - ti * qr
            acc += m * (tr * tr + ti * ti)
        partial[tid] = acc
        cuda.syncthreads()
        stride = THREADS // 2
        while stride > 0:
            if tid < stride:
                partial[tid] += partial[tid + stride]
            cuda.syncthreads()
            stride //= 2
        if tid == 0:
            t_norm[c] = partial[0]

    @cuda.jit
    def window_kernel(
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
        valid,
        step,
        two_pi_n,
        inv_axes2,
        k_xyz,
        cell,
        m2w,
        p_norm,
        particle_of,
        t_norm,
        refine,
        a_re,
        a_im,
        b_re,
        b_im,
        cc_map,
        out_cc,
        out_offset,
    ):
        c = cuda.blockIdx.x
        tid = cuda.threadIdx.x
        if c >= particle_of.shape[0]:
            return
        nkx, wx = ex_re.shape
        wy, dz = ey_re.shape
        wz = ez_re.shape[0]
        plane = dz * dz
        for idx in range(tid, wx * plane, THREADS):  # kx -> sx: a[jx, ky, kz]
            jx = idx // plane
            t = idx - jx * plane
            sr = np.float32(0.0)
            si = np.float32(0.0)
            for kx in range(nkx):
                if span_lo[kx] <= t < span_hi[kx]:
                    dr = d_re[c, kx * plane + t]
                    di = d_im[c, kx * plane + t]
                    sr += dr * ex_re[kx, jx] - di * ex_im[kx, jx]
                    si += dr * ex_im[kx, jx] + di * ex_re[kx, jx]
            a_re[c, idx] = sr
            a_im[c, idx] = si
        cuda.syncthreads()
        for idx in range(tid, wx * wy * dz, THREADS):  # ky -> sy: b[jx, jy, kz]
            kz = idx % dz
            jy = (idx // dz) % wy
            jx = idx // (dz * wy)
            sr = np.float32(0.0)
            si = np.float32(0.0)
            for ky in range(dz):
                if kz_lo[ky] <= kz < kz_hi[ky]:
                    ar = a_re[c, jx * plane + ky * dz + kz]
                    ai = a_im[c, jx * plane + ky * dz + kz]
                    sr += ar * ey_re[jy, ky] - ai * ey_im[jy, ky]
                    si += ar * ey_im[jy, ky] + ai * ey_re[jy, ky]
            b_re[c, idx] = sr
            b_im[c, idx] = si
        cuda.syncthreads()
        best_v = cuda.shared.array(THREADS, numba.float32)
        best_i = cuda.shared.array(THREADS, numba.int32)
        my_v = np.float32(-np.inf)
        my_i = -1
        for idx in range(tid, wz * wy * wx, THREADS):  # kz -> sz, real part; cc_map[jz, jy, jx]
            jx = idx % wx
            jy = (idx // wx) % wy
            jz = idx // (wx * wy)
            base = (jx * wy + jy) * dz
            acc = np.float32(0.0)
            for kz in range(dz):
                acc += b_re[c, base + kz] * ez_re[jz, kz] - b_im[c, base + kz] * ez_im[jz, kz]
            cc_map[c, idx] = acc
            if valid[jz, jy, jx] and (acc > my_v or (acc == my_v and idx < my_i)):
                my_v = acc
                my_i = idx
        best_v[tid] = my_v
        best_i[tid] = my_i
        cuda.syncthreads()
        stride = THREADS // 2
        while stride > 0:  # argmax, ties to the lowest index (the CPU's scan order)
            if tid < stride:
                ov = best_v[tid + stride]
                oi = best_i[tid + stride]
                if oi >= 0 and (
                    best_i[tid] < 0 or ov > best_v[tid] or (ov == best_v[tid] and oi < best_i[tid])
                ):
                    best_v[tid] = ov
                    best_i[tid] = oi
            cuda.syncthreads()
            stride //= 2
        sums = cuda.shared.array((10, THREADS), numba.float64)
        pos = cuda.shared.array(4, numba.float64)  # x, y, z, value
        if tid == 0:
            i0 = best_i[0]
            pos[0] = (i0 % wx - (wx - 1) // 2) * step
            pos[1] = ((i0 // wx) % wy - (wy - 1) // 2) * step
            pos[2] = (i0 // (wx * wy) - (wz - 1) // 2) * step
            pos[3] = best_v[0]
        cuda.syncthreads()
        sx = pos[0]
        sy = pos[1]
        sz = pos[2]
        f0 = pos[3]
        p = particle_of[c]
        if refine:
            for it in range(NEWTON_ITERATIONS + 1):
                for j in range(10):
                    sums[j, tid] = 0.0
                x = pos[0]
                y = pos[1]
                z = pos[2]
                for i in range(tid, k_xyz.shape[0], THREADS):
                    if m2w[p, i] == 0.0:
                        continue
                    kx = k_xyz[i, 0]
                    ky = k_xyz[i, 1]
                    kz = k_xyz[i, 2]
                    ph = two_pi_n * (kx * x + ky * y + kz * z)
                    cr = math.cos(ph)
                    ci = math.sin(ph)
                    zr = d_re[c, cell[i]]
                    zi = d_im[c, cell[i]]
                    ur = zr * cr - zi * ci
                    ui = zr * ci + zi * cr
                    sums[0, tid] += ur
                    sums[1, tid] -= kx * ui
                    sums[2, tid] -= ky * ui
                    sums[3, tid] -= kz * ui
                    sums[4, tid] -= kx * kx * ur
                    sums[5, tid] -= kx * ky * ur
                    sums[6, tid] -= kx * kz * ur
                    sums[7, tid] -= ky * ky * ur
                    sums[8, tid] -= ky * kz * ur
                    sums[9, tid] -= kz * kz * ur
                cuda.syncthreads()
                stride = THREADS // 2
                while stride > 0:
                    if tid < stride:
                        for j in range(10):
                            sums[j, tid] += sums[j, tid + stride]
                    cuda.syncthreads()
                    stride //= 2
                if tid == 0:
                    if it < NEWTON_ITERATIONS:
                        g = two_pi_n
                        h = two_pi_n * two_pi_n
                        dx, dy, dzz = step_fn(
                            sums[0, 0],
                            sums[1, 0] * g,
                            sums[2, 0] * g,
                            sums[3, 0] * g,
                            sums[4, 0] * h,
                            sums[5, 0] * h,
                            sums[6, 0] * h,
                            sums[7, 0] * h,
                            sums[8, 0] * h,
                            sums[9, 0] * h,
                            step,
                        )
                        x = min(sx + step, max(sx - step, pos[0] + dx))
                        y = min(sy + step, max(sy - step, pos[1] + dy))
                        z = min(sz + step, max(sz - step, pos[2] + dzz))
                        if it == NEWTON_ITERATIONS - 1:
                            x, y, z = clip(
                                sx, sy, sz, x, y, z, inv_axes2[0], inv_axes2[1], inv_axes2[2]
                            )
                        pos[0] = x
                        pos[1] = y
                        pos[2] = z
                    elif sums[0, 0] >= f0:
                        pos[3] = sums[0, 0]
                    else:
                        pos[0] = sx
                        pos[1] = sy
                        pos[2] = sz
                cuda.syncthreads()
        if tid == 0:
            denom = math.sqrt(t_norm[c]) * p_norm[p]
            out_cc[c] = pos[3] / denom if denom > 0.0 else 0.0
            out_offset[c, 0] = pos[0]
            out_offset[c, 1] = pos[1]
            out_offset[c, 2] = pos[2]

    return (fill_kernel, window_kernel)


def score_candidates_cuda(
    ref: ReferenceArrays,
    window: WindowArrays,
    particles: ParticleArrays,
    rotations: np.ndarray,
    particle_of: np.ndarray,
    refine: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """GPU version of :func:`stasnake.kernels.ccsearch.score_candidates` (same arguments and results).

    Parameters
    ----------
    ref, window, particles
        As for the CPU function (copied to the device once per call).
    rotations : np.ndarray
        (C, 3, 3) float64 poses.
    particle_of : np.ndarray
        (C,) int32 particle index of each candidate.
    refine : bool
        Newton refinement of the peak (False: grid value and position).

    Returns
    -------
    cc : np.ndarray
        (C,) float32.
    offsets : np.ndarray
        (C, 3) float32 shifts (x, y, z) in full-size pixels from the window centre.
    """
    require_cuda()
    fill_kernel, window_kernel = _kernels()
    n_cand = len(rotations)
    out_cc = np.empty(n_cand, np.float32)
    out_off = np.empty((n_cand, 3), np.float32)
    if n_cand == 0:
        return out_cc, out_off
    nkx, wx = window.ex_re.shape
    wy, dz = window.ey_re.shape
    wz = window.ez_re.shape[0]
    plane = dz * dz
    dev = {
        name: cuda.to_device(np.ascontiguousarray(a))
        for name, a in (
            ("cube", ref.cube.reshape(-1)),
            ("k", ref.k_xyz),
            ("cell", ref.cell),
            ("span_lo", ref.span_lo),
            ("span_hi", ref.span_hi),
            ("kz_lo", ref.kz_lo),
            ("kz_hi", ref.kz_hi),
            ("valid", window.valid),
            ("q_re", particles.q_re),
            ("q_im", particles.q_im),
            ("m2w", particles.m2w),
            ("p_norm", particles.p_norm),
            ("inv_axes2", np.asarray(window.inv_axes2, np.float64)),
            *((f"e{i}", a) for i, a in enumerate(window[:6])),
        )
    }
    chunk = min(CHUNK, n_cand)
    d_re = cuda.device_array((chunk, nkx * plane), np.float32)
    d_im = cuda.device_array((chunk, nkx * plane), np.float32)
    a_re = cuda.device_array((chunk, wx * plane), np.float32)
    a_im = cuda.device_array((chunk, wx * plane), np.float32)
    b_re = cuda.device_array((chunk, wx * wy * dz), np.float32)
    b_im = cuda.device_array((chunk, wx * wy * dz), np.float32)
    cc_map = cuda.device_array((chunk, wx * wy * wz), np.float32)
    t_norm = cuda.device_array(chunk, np.float64)
    two_pi_n = 2.0 * math.pi / window.box
    for start in range(0, n_cand, chunk):
        stop = min(n_cand, start + chunk)
        d_rot = cuda.to_device(np.ascontiguousarray(rotations[start:stop], np.float64))
        d_part = cuda.to_device(np.ascontiguousarray(particle_of[start:stop], np.int32))
        d_cc = cuda.device_array(stop - start, np.float32)
        d_off = cuda.device_array((stop - start, 3), np.float32)
        fill_kernel[stop - start, THREADS](
            dev["cube"],
            ref.cube.shape[0],
            float(ref.centre),
            dev["k"],
            dev["cell"],
            dev["q_re"],
            dev["q_im"],
            dev["m2w"],
            d_rot,
            d_part,
            d_re,
            d_im,
            t_norm,
        )
        window_kernel[stop - start, THREADS](
            d_re,
            d_im,
            dev["span_lo"],
            dev["span_hi"],
            dev["kz_lo"],
            dev["kz_hi"],
            *(dev[f"e{i}"] for i in range(6)),
            dev["valid"],
            float(window.step_px),
            two_pi_n,
            dev["inv_axes2"],
            dev["k"],
            dev["cell"],
            dev["m2w"],
            dev["p_norm"],
            d_part,
            t_norm,
            bool(refine),
            a_re,
            a_im,
            b_re,
            b_im,
            cc_map,
            d_cc,
            d_off,
        )
        out_cc[start:stop] = d_cc.copy_to_host()
        out_off[start:stop] = d_off.copy_to_host()
    return out_cc, out_off
