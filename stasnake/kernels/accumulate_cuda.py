"""CUDA twin of :func:`stasnake.kernels.accumulate.accumulate_spectrum` (numba.cuda).

The per-frequency wedge test is the same Python function,
:func:`stasnake.kernels.accumulate.wedge_weight`, wrapped with
``numba.cuda.jit(device=True)``. One thread per output frequency, x fastest
(``threadIdx.x``): a warp reads and writes contiguous rows of the spectra. Each
thread owns its output voxel, so no atomics are needed. The sums stay on the
device between particles (:class:`CudaSpectrumSums`) and come back to the host
once at the end.

Without a GPU, numba's CUDA simulator runs the kernel when
``NUMBA_ENABLE_CUDASIM=1`` is set before numba is first imported (slow: keep
grids tiny).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda  # module global: the simulator swaps it inside kernels

from stasnake.kernels.accumulate import (
    NO_TABLE,
    NO_TILTS,
    fft_index_frequency,
    make_transfer_weight,
    transfer_at,
    wedge_weight,
)
from stasnake.kernels.backproject_cuda import require_cuda

_THREADS = (32, 4, 2)  # (x, y, z) threads per block


@functools.cache
def _kernel():
    """Compile (lazily, once) and return the CUDA kernel."""
    weight_at = cuda.jit(device=True)(make_transfer_weight(cuda.jit(device=True)(wedge_weight),
                                                           cuda.jit(device=True)(transfer_at)))
    freq = cuda.jit(device=True)(fft_index_frequency)

    @cuda.jit
    def accumulate_kernel(spectrum, rot, wedge, scale, sum_out, weight_out, tilts, table, samples_per_pixel):
        ix, iy, iz = cuda.grid(3)
        d = sum_out.shape[0]
        if iz >= d or iy >= sum_out.shape[1] or ix >= sum_out.shape[2]:
            return
        n = spectrum.shape[0]
        fz = freq(iz, d)
        fy = freq(iy, d)
        jz = fz if fz >= 0 else fz + n
        jy = fy if fy >= 0 else fy + n
        w = weight_at(rot, float(ix), float(fy), float(fz), wedge, tilts, table, samples_per_pixel)
        if w != 0.0:
            sum_out[iz, iy, ix] += (scale * w) * spectrum[jz, jy, ix]
            weight_out[iz, iy, ix] += w * w

    return accumulate_kernel


class CudaSpectrumSums:
    """Device-resident wedge-masked spectrum sum and weight of a d-box (the GPU accumulator).

    Parameters
    ----------
    dim : int
        Side d of the output box (pixels).
    """

    def __init__(self, dim: int):
        require_cuda()
        self.dim = int(dim)
        shape = (self.dim, self.dim, self.dim // 2 + 1)
        self._sum = cuda.to_device(np.zeros(shape, dtype=np.complex128))
        self._weight = cuda.to_device(np.zeros(shape, dtype=np.float64))
        self._kernel = _kernel()
        self._no_transfer = (cuda.to_device(NO_TILTS), cuda.to_device(NO_TABLE))  # binary wedge: no copies per particle
        self._threads = tuple(min(t, s) for t, s in zip(_THREADS, shape[::-1], strict=True))
        self._blocks = tuple((s + t - 1) // t for s, t in zip(shape[::-1], self._threads, strict=True))

    def add(self, spectrum, rot, wedge, scale: float, tilts=None, table=None, samples_per_pixel: float = 1.0) -> None:
        """Add one particle (see :func:`stasnake.kernels.accumulate.accumulate_spectrum`).

        Parameters
        ----------
        spectrum : np.ndarray or device array
            (n, n, n // 2 + 1) complex64 ``rfftn`` of the aligned particle, ``n >= d``.
        rot : array_like
            (3, 3) float64 pose (reference -> tomogram).
        wedge : array_like
            (6,) float64 tilt-range constants (``wedge_parameters``).
        scale : float
            Factor on the spectrum.
        tilts, table, samples_per_pixel
            The particle's transfer (``transfer_weight``); None: the binary wedge.
        """
        d_spec = (
            spectrum
            if hasattr(spectrum, "copy_to_host")
            else cuda.to_device(np.ascontiguousarray(spectrum, dtype=np.complex64))
        )
        d_rot = cuda.to_device(np.ascontiguousarray(rot, dtype=np.float64).reshape(3, 3))
        d_wedge = cuda.to_device(np.ascontiguousarray(wedge, dtype=np.float64).reshape(-1))
        if tilts is None:
            d_tilts, d_table = self._no_transfer
        else:
            d_tilts = cuda.to_device(np.ascontiguousarray(tilts, dtype=np.float64))
            d_table = cuda.to_device(np.ascontiguousarray(table, dtype=np.float64))
        self._kernel[self._blocks, self._threads](d_spec, d_rot, d_wedge, np.float64(scale), self._sum, self._weight,
                                                  d_tilts, d_table, np.float64(samples_per_pixel))  # fmt: skip

    def to_host(self) -> tuple[np.ndarray, np.ndarray]:
        """(complex128 sum, float64 weight), each (d, d, d // 2 + 1), copied to the host."""
        return self._sum.copy_to_host(), self._weight.copy_to_host()
