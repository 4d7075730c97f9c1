"""CUDA twin of :func:`stasnake.kernels.backproject.backproject_slab` (numba.cuda).

The per-voxel maths is the same Python function, :func:`detector_u`, wrapped
with ``numba.cuda.jit(device=True)`` here and with ``numba.njit`` in the CPU
module, so both paths compute the detector coordinate identically.

Threads: one thread per voxel ``(iz, ix, y)`` of a y-slab, with y as the
fastest thread index (``threadIdx.x``). Consecutive threads of a warp read
consecutive ``proj_tuy[t, i0, y]`` and write consecutive ``out_zxy[iz, ix, y]``
(coalesced), and share ``(iz, ix)`` so the detector coordinate and the branch
are uniform across the warp. Each thread loops over the tilts and keeps its
sum in a register.

Without a GPU, numba's CUDA simulator runs the same kernel in Python threads
when the environment variable ``NUMBA_ENABLE_CUDASIM=1`` is set before numba is
first imported (slow: tests keep it to a few thousand voxels).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda  # module global: the simulator swaps it inside kernels

from stasnake.kernels.backproject import detector_u

_THREADS = (32, 4, 2)  # (y, x, z) threads per block: 256


def cuda_available() -> bool:
    """True when numba.cuda can run kernels (a GPU, or the simulator)."""
    try:
        return bool(cuda.is_available())
    except Exception:  # pragma: no cover - broken driver
        return False


def require_cuda() -> None:
    """Raise RuntimeError with a clear message when no CUDA device can be used."""
    if not cuda_available():
        raise RuntimeError(
            "device='cuda' was requested but no CUDA device is available "
            "(numba.cuda.is_available() is False: no NVIDIA GPU/driver, or numba without CUDA support). "
            "Use device='cpu', or set NUMBA_ENABLE_CUDASIM=1 before numba is imported to run the "
            "(slow) CUDA simulator."
        )


@functools.cache
def _kernel():
    """Compile (lazily, once) and return the CUDA kernel."""
    det_u = cuda.jit(device=True)(detector_u)

    @cuda.jit
    def backproject_kernel(proj_tuy, cos_t, sin_t, weights, out_zxy):
        y, ix, iz = cuda.grid(3)
        nz = out_zxy.shape[0]
        nx = out_zxy.shape[1]
        sy = out_zxy.shape[2]
        if iz >= nz or ix >= nx or y >= sy:
            return
        n_t = proj_tuy.shape[0]
        nu = proj_tuy.shape[1] - 2
        z_px = np.float32(iz - nz // 2)
        x_px = np.float32(ix - nx // 2)
        cu = np.float32(nu // 2)
        one = np.float32(1.0)
        acc = np.float32(0.0)
        for t in range(n_t):
            u = det_u(x_px, z_px, cos_t[t], sin_t[t], cu) + one
            if u < 0.0 or u >= nu + 1:
                continue
            i0 = int(u)
            f = u - np.float32(i0)
            w = weights[t]
            acc += (w * (one - f)) * proj_tuy[t, i0, y] + (w * f) * proj_tuy[t, i0 + 1, y]
        out_zxy[iz, ix, y] = acc

    return backproject_kernel


def backproject_slab_cuda(proj_tuy, cos_t, sin_t, weights, nz: int, nx: int) -> np.ndarray:
    """Back-project one y-slab on the GPU (the per-voxel maths of ``backproject_slab``).

    Unlike the CPU kernel, which overwrites a (nz, sy, nx) output in place,
    this returns a new (nz, nx, sy) array (y contiguous, the GPU's coalesced
    axis); :func:`stasnake.tilt.reconstruct.reconstruct_wbp` transposes it.

    Parameters
    ----------
    proj_tuy : np.ndarray
        (n_tilts, nu + 2, sy) float32 filtered projections, y contiguous, with
        one zero column of padding at each end of u (copied to the device).
    cos_t, sin_t, weights : np.ndarray or device arrays
        (n_tilts,) float32 cosines, sines and angular weights.
    nz, nx : int
        Volume thickness and width (pixels).

    Returns
    -------
    np.ndarray
        (nz, nx, sy) float32 slab (y contiguous), copied back to the host.
    """
    require_cuda()
    kernel = _kernel()
    proj = np.ascontiguousarray(proj_tuy, dtype=np.float32)
    sy = proj.shape[2]
    d_proj = cuda.to_device(proj)
    d_cos, d_sin, d_w = (a if hasattr(a, "copy_to_host") else cuda.to_device(np.ascontiguousarray(a, np.float32))
                         for a in (cos_t, sin_t, weights))
    d_out = cuda.device_array((int(nz), int(nx), sy), dtype=np.float32)
    blocks = tuple((n + t - 1) // t for n, t in zip((sy, int(nx), int(nz)), _THREADS, strict=True))
    kernel[blocks, _THREADS](d_proj, d_cos, d_sin, d_w, d_out)
    return d_out.copy_to_host()
