"""CUDA twin of :func:`stasnake.kernels.interp.affine_trilinear` (numba.cuda).

``out(p) = vol(m @ (p - out_centre) + offset)`` with trilinear interpolation;
samples outside the input count as ``cval`` (each of the 8 neighbours alone,
like scipy's "grid-constant" mode), exactly as the CPU kernel.

Threads: one per output voxel, x fastest (``threadIdx.x``), so a warp reads
neighbouring source voxels along a rotated line and writes a contiguous output
row. Without a GPU, numba's CUDA simulator runs the kernel when
``NUMBA_ENABLE_CUDASIM=1`` is set before numba is first imported (slow: keep
volumes tiny).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numba import cuda  # module global: the simulator swaps it inside kernels

from stasnake.kernels.backproject_cuda import require_cuda
from stasnake.kernels.interp import _sample

_THREADS = (32, 4, 2)  # (x, y, z) threads per block


@functools.cache
def _kernel():
    """Compile (lazily, once) and return the CUDA kernel."""

    sample = cuda.jit(device=True)(_sample.py_func)  # the CPU kernel's bounds-checked read

    @cuda.jit
    def trilinear_kernel(vol, m, offset, centre, cval, out):
        i, j, k = cuda.grid(3)
        if k >= out.shape[0] or j >= out.shape[1] or i >= out.shape[2]:
            return
        x = i - centre[0]
        y = j - centre[1]
        z = k - centre[2]
        sx = m[0, 0] * x + m[0, 1] * y + m[0, 2] * z + offset[0]
        sy = m[1, 0] * x + m[1, 1] * y + m[1, 2] * z + offset[1]
        sz = m[2, 0] * x + m[2, 1] * y + m[2, 2] * z + offset[2]
        x0 = int(math.floor(sx))
        y0 = int(math.floor(sy))
        z0 = int(math.floor(sz))
        fx = np.float32(sx - x0)
        fy = np.float32(sy - y0)
        fz = np.float32(sz - z0)
        one = np.float32(1.0)
        gx = one - fx
        gy = one - fy
        gz = one - fz
        c00 = sample(vol, z0, y0, x0, cval) * gx + sample(vol, z0, y0, x0 + 1, cval) * fx
        c01 = sample(vol, z0, y0 + 1, x0, cval) * gx + sample(vol, z0, y0 + 1, x0 + 1, cval) * fx
        c10 = sample(vol, z0 + 1, y0, x0, cval) * gx + sample(vol, z0 + 1, y0, x0 + 1, cval) * fx
        c11 = sample(vol, z0 + 1, y0 + 1, x0, cval) * gx + sample(vol, z0 + 1, y0 + 1, x0 + 1, cval) * fx
        out[k, j, i] = (c00 * gy + c01 * fy) * gz + (c10 * gy + c11 * fy) * fz

    return trilinear_kernel


def affine_trilinear_cuda(vol, m, offset_xyz, out_shape_zyx, out_centre_xyz, cval: float = 0.0, to_host: bool = True):
    """Resample ``out(p) = vol(m @ (p - out_centre) + offset)`` trilinearly on the GPU.

    Parameters
    ----------
    vol : np.ndarray or device array
        (nz, ny, nx) float32 input (copied to the device if on the host).
    m : array_like
        (3, 3) matrix acting on (x, y, z) column vectors.
    offset_xyz : array_like
        (3,) source index (x, y, z) of the output centre.
    out_shape_zyx : tuple of int
        (nz, ny, nx) output shape.
    out_centre_xyz : array_like
        (3,) output index (x, y, z) of its centre.
    cval : float
        Value of samples outside the input.
    to_host : bool
        True: return a host ``np.ndarray``; False: the device array.

    Returns
    -------
    np.ndarray or device array
        float32 volume of ``out_shape_zyx``.
    """
    require_cuda()
    kernel = _kernel()
    d_vol = vol if hasattr(vol, "copy_to_host") else cuda.to_device(np.ascontiguousarray(vol, dtype=np.float32))
    m = cuda.to_device(np.ascontiguousarray(m, dtype=np.float64).reshape(3, 3))
    off = cuda.to_device(np.ascontiguousarray(offset_xyz, dtype=np.float64).reshape(3))
    centre = cuda.to_device(np.ascontiguousarray(out_centre_xyz, dtype=np.float64).reshape(3))
    nz, ny, nx = (int(v) for v in out_shape_zyx)
    d_out = cuda.device_array((nz, ny, nx), dtype=np.float32)
    threads = tuple(min(t, s) for t, s in zip(_THREADS, (nx, ny, nz), strict=True))  # small volumes: no idle threads
    blocks = tuple((s + t - 1) // t for s, t in zip((nx, ny, nz), threads, strict=True))
    kernel[blocks, threads](d_vol, m, off, centre, np.float32(cval), d_out)
    return d_out.copy_to_host() if to_host else d_out
