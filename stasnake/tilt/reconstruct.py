"""Weighted back-projection (WBP) of an aligned tilt series, slab by slab.

Geometry (IMOD-like, see docs/geometry-conventions): the volume ``V[iz, iy, ix]``
has coordinates about its centre ``X = ix - nx//2, Y = iy - ny//2,
Z = iz - nz//2`` (pixels); at tilt angle t (degrees, sign as in the mdoc/.tlt)
a voxel projects in the aligned image ``P[iv, iu]`` (tilt axis along y, centre
``(ny//2, nu//2)``) to ``U = X cos t + Z sin t``, ``V = Y``. The volume is
``(thickness_px, ny, nu)`` (z, y, x).

Weighting is a 1-D ramp (R-weighting) along U, applied per projection row with
zero padding (no wrap-around), optionally rolled off toward Nyquist (cosine or
Hamming). The sum over tilts is weighted by each tilt's angular interval in
radians, so a positive point source reconstructs positive with the amplitude
of continuous filtered back-projection (exact for full 180 degree coverage).

Memory: the tilt axis makes y-slabs independent, so the volume is built slab by
slab into a pre-allocated output, which may be a numpy memmap
(:func:`reconstruct_wbp_to_mrc`); only one slab of filtered projections and one
slab of the volume are held in RAM at a time.

Threads: the kernel uses numba's thread pool (``numba.set_num_threads`` is set
by the calling rule script, never here) and the filter uses ``scipy.fft`` with
``workers``. When numba ``parallel`` loops and threaded FFTs alternate, set the
environment variable ``OMP_WAIT_POLICY=PASSIVE`` before starting Python,
otherwise spinning OpenMP threads steal the FFT's cores.
"""

from __future__ import annotations

import os

import numpy as np
import scipy.fft

from stasnake.kernels.backproject import backproject_slab

_FILTERS = ("ramp", "cosine", "hamming", "none")


def ramp_filter(n_padded: int, filter: str = "ramp") -> np.ndarray:
    """Frequency response (rfft layout) of the weighting filter.

    The ramp is the transform of the discrete Ram-Lak kernel
    (``h[0] = 1/4``, ``h[k odd] = -1/(pi k)^2``), which equals ``|f|`` in cycles
    per pixel (0.5 at Nyquist) and has the correct DC term for a finite
    detector.

    Parameters
    ----------
    n_padded : int
        Padded row length (even).
    filter : {"ramp", "cosine", "hamming", "none"}
        "ramp": pure R-weighting; "cosine": ramp * cos(pi f) (zero at Nyquist);
        "hamming": ramp * (0.54 + 0.46 cos(2 pi f)); "none": no weighting (plain
        back-projection, for tests).

    Returns
    -------
    np.ndarray
        (n_padded // 2 + 1,) float64 filter.
    """
    if filter not in _FILTERS:
        raise ValueError(f"filter must be one of {_FILTERS}, not {filter!r}")
    nfreq = n_padded // 2 + 1
    if filter == "none":
        return np.ones(nfreq)
    k = np.concatenate([np.arange(0, n_padded // 2 + 1), np.arange(-(n_padded // 2) + 1, 0)])
    h = np.zeros(n_padded)
    h[0] = 0.25
    odd = k % 2 == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    resp = np.real(scipy.fft.rfft(h))
    f = np.arange(nfreq) / n_padded
    if filter == "cosine":
        resp *= np.cos(np.pi * f)
    elif filter == "hamming":
        resp *= 0.54 + 0.46 * np.cos(2 * np.pi * f)
    return resp


def tilt_weights(tilt_angles_deg) -> np.ndarray:
    """Angular interval (radians) represented by each tilt, for the FBP sum.

    Half the distance to each neighbour in sorted order; the end tilts get the
    mean spacing on their outer side. For evenly spaced tilts this is the
    spacing itself (pi / n for full coverage).

    Parameters
    ----------
    tilt_angles_deg : array_like
        (n_tilts,) tilt angles in degrees, any order.

    Returns
    -------
    np.ndarray
        (n_tilts,) weights in radians, in the input order.
    """
    t = np.radians(np.asarray(tilt_angles_deg, dtype=np.float64))
    n = t.size
    if n == 1:
        return np.ones(1)
    order = np.argsort(t)
    ts = t[order]
    d = np.diff(ts)
    mean_d = (ts[-1] - ts[0]) / (n - 1)
    left = np.concatenate([[mean_d], d])
    right = np.concatenate([d, [mean_d]])
    w = np.empty(n)
    w[order] = 0.5 * (left + right)
    return w


def _padded_length(nu: int) -> int:
    """Even FFT-friendly length >= 2 * nu (zero padding against wrap-around)."""
    n = scipy.fft.next_fast_len(2 * nu, real=True)
    while n % 2:
        n = scipy.fft.next_fast_len(n + 1, real=True)
    return n


def _filter_rows(rows: np.ndarray, response: np.ndarray, n_padded: int, workers: int) -> np.ndarray:
    """Filter (n, sy, nu) rows along the last axis with zero padding to n_padded."""
    nu = rows.shape[-1]
    spec = scipy.fft.rfft(rows, n=n_padded, axis=-1, workers=workers)
    spec *= response.astype(np.float32)
    return scipy.fft.irfft(spec, n=n_padded, axis=-1, workers=workers)[..., :nu]


def reconstruct_wbp(
    aligned_stack: np.ndarray,
    tilt_angles_deg,
    thickness_px: int,
    out: np.ndarray | None = None,
    slab_size: int = 64,
    filter: str = "ramp",
    device: str = "cpu",
) -> np.ndarray:
    """Reconstruct a tomogram by weighted back-projection.

    Parameters
    ----------
    aligned_stack : np.ndarray
        (n_tilts, ny, nu) aligned images (tilt axis along y); may be a memmap,
        only ``slab_size`` rows of every tilt are read at a time.
    tilt_angles_deg : array_like
        (n_tilts,) tilt angles in degrees (sign as in the mdoc/.tlt), in stack
        order.
    thickness_px : int
        Number of z slices of the output.
    out : np.ndarray, optional
        Pre-allocated (thickness_px, ny, nu) float output (numpy array or
        memmap, e.g. ``MrcSlabWriter(...).data``). Allocated as float32 when
        omitted.
    slab_size : int
        Number of y rows reconstructed at a time (memory bound; the result does
        not depend on it).
    filter : {"ramp", "cosine", "hamming", "none"}
        Weighting along U (see :func:`ramp_filter`).
    device : {"cpu", "cuda"}
        "cuda" is not implemented yet.

    Returns
    -------
    np.ndarray
        (thickness_px, ny, nu) volume (``out`` when given), same contrast as the
        input images.
    """
    if device == "cuda":
        raise NotImplementedError("CUDA back-projection is not implemented yet; use device='cpu'")
    if device != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda', not {device!r}")
    if aligned_stack.ndim != 3:
        raise ValueError(f"aligned_stack must be (n_tilts, ny, nu), got shape {aligned_stack.shape}")
    n_t, ny, nu = aligned_stack.shape
    angles = np.asarray(tilt_angles_deg, dtype=np.float64).ravel()
    if angles.size != n_t:
        raise ValueError(f"{angles.size} tilt angles for a stack of {n_t} images")
    nz = int(thickness_px)
    if nz < 1 or slab_size < 1:
        raise ValueError("thickness_px and slab_size must be positive")
    shape = (nz, ny, nu)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif tuple(out.shape) != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape}")

    n_padded = _padded_length(nu)
    response = ramp_filter(n_padded, filter)
    rad = np.radians(angles)
    cos_t = np.cos(rad).astype(np.float32)
    sin_t = np.sin(rad).astype(np.float32)
    weights = tilt_weights(angles).astype(np.float32)
    workers = os.cpu_count() or 1

    for y0 in range(0, ny, slab_size):
        y1 = min(ny, y0 + slab_size)
        rows = np.asarray(aligned_stack[:, y0:y1, :], dtype=np.float32)
        filtered = _filter_rows(rows, response, n_padded, workers)
        proj = np.zeros((n_t, nu + 2, y1 - y0), dtype=np.float32)
        proj[:, 1:-1, :] = filtered.transpose(0, 2, 1)
        acc = np.zeros((nz, nu, y1 - y0), dtype=np.float32)
        backproject_slab(proj, cos_t, sin_t, weights, nz, nu, acc)
        out[:, y0:y1, :] = acc.transpose(0, 2, 1)
    return out


def reconstruct_wbp_to_mrc(
    aligned_stack: np.ndarray,
    tilt_angles_deg,
    thickness_px: int,
    path,
    pixel_size_angstrom: float,
    slab_size: int = 64,
    dtype: str = "float32",
    filter: str = "ramp",
    device: str = "cpu",
) -> None:
    """Reconstruct by WBP straight into an MRC file, slab by slab (atomic write).

    The output is a memory-mapped MRC written through
    :class:`stasnake.io.mrc.MrcSlabWriter`, so the tomogram is never held in RAM
    as a whole; it appears under ``path`` only when complete.

    Parameters
    ----------
    aligned_stack : np.ndarray
        (n_tilts, ny, nu) aligned stack (may be a memmap).
    tilt_angles_deg : array_like
        (n_tilts,) tilt angles in degrees.
    thickness_px : int
        Number of z slices.
    path : str or PathLike
        Output MRC file, (thickness_px, ny, nu).
    pixel_size_angstrom : float
        Pixel size in Å written to the header.
    slab_size : int
        Rows of y per slab.
    dtype : {"float32", "float16"}
        Storage mode of the file.
    filter : str
        Weighting filter (see :func:`ramp_filter`).
    device : {"cpu", "cuda"}
        Where the back-projection runs (see :func:`reconstruct_wbp`).
    """
    from stasnake.io.mrc import MrcSlabWriter

    n_t, ny, nu = aligned_stack.shape
    with MrcSlabWriter(path, (int(thickness_px), ny, nu), pixel_size_angstrom, dtype=dtype) as w:
        reconstruct_wbp(aligned_stack, tilt_angles_deg, thickness_px, out=w.data,
                        slab_size=slab_size, filter=filter, device=device)


def bin_volume_fourier(volume: np.ndarray, factor: int, workers: int | None = None) -> np.ndarray:
    """Bin a (z, y, x) volume by an integer factor by Fourier cropping.

    Each axis of length n becomes ``n // factor``; the pixel size multiplies by
    ``factor``. Frequencies below the new Nyquist are kept exactly (including the
    mean), the rest are discarded (no aliasing, unlike real-space averaging).
    Holds the full complex transform in memory (about the volume size, complex64
    for float32 input).

    Parameters
    ----------
    volume : np.ndarray
        (z, y, x) volume.
    factor : int
        Binning factor >= 1.
    workers : int, optional
        Threads for scipy.fft (default: all CPUs).

    Returns
    -------
    np.ndarray
        (nz // factor, ny // factor, nx // factor) float32 volume.
    """
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"factor must be >= 1, not {factor}")
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3:
        raise ValueError(f"volume must be 3-D (z, y, x), got shape {vol.shape}")
    if factor == 1:
        return vol.copy()
    workers = workers or os.cpu_count() or 1
    new_shape = tuple(n // factor for n in vol.shape)
    if min(new_shape) < 1:
        raise ValueError(f"volume {vol.shape} too small for binning by {factor}")
    spec = scipy.fft.rfftn(vol, norm="forward", workers=workers)
    idx = []
    for n, m in zip(vol.shape[:-1], new_shape[:-1], strict=True):
        idx.append(np.fft.fftfreq(m, 1.0 / m).astype(int) % n)
    cropped = spec[np.ix_(idx[0], idx[1], np.arange(new_shape[-1] // 2 + 1))]
    res = scipy.fft.irfftn(cropped, s=new_shape, norm="forward", workers=workers)
    return res.astype(np.float32)
