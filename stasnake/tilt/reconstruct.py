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

An optional "SIRT-like" weighting (``filter="sirt-like"``) replaces the ramp by
Zeng's (2012) windowed ramp that mimics ``sirt_iterations`` iterations of the
Landweber/SIRT algorithm (IMOD tilt's ``FakeSIRTiterations``); see
:func:`sirt_like_window`.

Memory: the tilt axis makes y-slabs independent, so the volume is built slab by
slab; only one slab of filtered projections and one slab of the volume are
held in RAM at a time (the CPU kernel of :func:`reconstruct_wbp` writes each
slab straight into the float32 output). :func:`reconstruct_wbp_to_mrc` writes each finished slab
with positioned writes (:class:`stasnake.io.mrc.MrcSlabWriter`), so the peak
RSS does not grow with the tomogram. :func:`bin_mrc_fourier` bins an MRC file
by Fourier cropping with bounded memory.

Device: ``device="cuda"`` runs the back-projection of each slab on a GPU with
numba.cuda (:mod:`stasnake.kernels.backproject_cuda`); filtering stays on the
CPU, the filtered slab is copied to the device and the volume slab back.

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

from stasnake.kernels.backproject import backproject_slab, pack_row_pairs, unpack_row_pairs

_FILTERS = ("ramp", "cosine", "hamming", "sirt-like", "none")
_DEVICES = ("cpu", "cuda")

#: Landweber step of the SIRT-like window in cycles per pixel (the value used by
#: IMOD tilt's FakeSIRTiterations, as re-implemented in quinoa's ``SIRTWeight``).
SIRT_ALPHA = 0.00195


def sirt_like_window(freq_cycles_per_px, iterations: int, alpha: float = SIRT_ALPHA) -> np.ndarray:
    """Zeng's window that turns the ramp filter into k iterations of SIRT/Landweber.

    Landweber iterations ``x_{n+1} = x_n + alpha A^T (p - A x_n)`` from
    ``x_0 = 0`` give ``x_k = [1 - (1 - alpha A^T A)^k] (A^T A)^{-1} A^T p``. For
    parallel-beam tomography ``A^T A`` is the 1/|f| filter, so the k-th iterate
    is filtered back-projection with the ramp multiplied by

    ``W_k(f) = 1 - (1 - alpha / |f|)^k``

    (G. L. Zeng, "A filtered backprojection algorithm with characteristics of
    the iterative Landweber algorithm", Med. Phys. 39:603-607, 2012; IMOD tilt
    ``FakeSIRTiterations`` cites it). ``W_k -> 1`` (plain ramp) at low
    frequency and ``W_k ~ k alpha / |f|`` (plain back-projection scaled by
    ``k alpha``) at high frequency: a smooth low-pass whose cut-off grows
    roughly as ``k alpha``. Frequencies below ``alpha`` would make the
    iteration diverge for a step that large (``|1 - alpha/|f|| > 1``); they are
    treated as converged (``alpha / |f|`` clipped to 1, so ``W_k = 1``
    there, DC included).

    Parameters
    ----------
    freq_cycles_per_px : array_like
        Spatial frequencies |f| in cycles per pixel (0 to 0.5).
    iterations : int
        Number k of SIRT iterations to mimic (>= 1).
    alpha : float
        Landweber step in cycles per pixel.

    Returns
    -------
    np.ndarray
        Window values in [0, 1], same shape as ``freq_cycles_per_px``.
    """
    k = int(iterations)
    if k < 1:
        raise ValueError(f"sirt_iterations must be >= 1, not {iterations}")
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, not {alpha}")
    f = np.abs(np.asarray(freq_cycles_per_px, dtype=np.float64))
    with np.errstate(divide="ignore"):
        ratio = np.where(f > 0, np.minimum(alpha / np.where(f > 0, f, 1.0), 1.0), 1.0)
    return 1.0 - (1.0 - ratio) ** k


def ramp_filter(n_padded: int, filter: str = "ramp", sirt_iterations: int = 10) -> np.ndarray:
    """Frequency response (rfft layout) of the weighting filter.

    The ramp is the transform of the discrete Ram-Lak kernel
    (``h[0] = 1/4``, ``h[k odd] = -1/(pi k)^2``), which equals ``|f|`` in cycles
    per pixel (0.5 at Nyquist) and has the correct DC term for a finite
    detector.

    Parameters
    ----------
    n_padded : int
        Padded row length (even).
    filter : {"ramp", "cosine", "hamming", "sirt-like", "none"}
        "ramp": pure R-weighting; "cosine": ramp * cos(pi f) (zero at Nyquist);
        "hamming": ramp * (0.54 + 0.46 cos(2 pi f)); "sirt-like": ramp *
        :func:`sirt_like_window` (mimics ``sirt_iterations`` of SIRT); "none":
        no weighting (plain back-projection, for tests).
    sirt_iterations : int
        Iterations mimicked by "sirt-like" (ignored otherwise).

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
    elif filter == "sirt-like":
        resp *= sirt_like_window(f, sirt_iterations)
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


#: Bytes of complex workspace filtered per FFT call (a cache-sized batch of tilts).
_FILTER_CHUNK_BYTES = 8 * 2**20


def _full_response(response: np.ndarray, n_padded: int) -> np.ndarray:
    """(n_padded,) float32 full-length even extension of an rfft-layout real filter."""
    r = np.asarray(response, dtype=np.float32)
    return np.concatenate([r, r[1:n_padded - n_padded // 2][::-1]])


def _filtered_projections(rows, response: np.ndarray, n_padded: int, workers: int,
                          workspace: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
    """Filter (n_tilts, sy, nu) rows along u and lay them out for the kernel.

    The filter is real and even, so two real rows ``a, b`` are filtered with
    one complex FFT of ``a + i b``: ``h * a = Re(ifft(H fft(a + i b)))`` and
    ``h * b = Im(...)``, with zero padding to ``n_padded`` (linear, not
    circular, convolution). The complex transforms run in place
    (``overwrite_x``) in a reused workspace, a few tilts at a time
    (``_FILTER_CHUNK_BYTES``), with ``scipy.fft`` and ``workers`` threads, so
    no array is allocated per call (fresh arrays cost page faults that took
    as long as the FFTs). Packing the pairs and the transposed unpacking into
    the kernel layout are numba loops
    (:func:`stasnake.kernels.backproject.pack_row_pairs`,
    :func:`~stasnake.kernels.backproject.unpack_row_pairs`).

    Parameters
    ----------
    rows : array_like
        (n_tilts, sy, nu) projection rows (numpy array or memmap, any float
        dtype and strides; read a chunk of tilts at a time).
    response : np.ndarray
        (n_padded // 2 + 1,) real filter in rfft layout (see :func:`ramp_filter`).
    n_padded : int
        Zero-padded FFT length (>= 2 nu, see :func:`_padded_length`).
    workers : int
        Threads for scipy.fft.
    workspace : np.ndarray, optional
        complex64 (chunk, >= (sy + 1) // 2, n_padded) workspace from
        :func:`_filter_workspace`, reused across calls.
    out : np.ndarray, optional
        (n_tilts, nu + 2, sy) float32 C-contiguous array to write (reused across slabs).

    Returns
    -------
    np.ndarray
        (n_tilts, nu + 2, sy) float32, C-contiguous, y contiguous, with a zero
        column of padding at each end of u (the layout of
        :func:`stasnake.kernels.backproject.backproject_slab`).
    """
    n_t, sy, nu = rows.shape
    n_pairs = (sy + 1) // 2
    if workspace is None or workspace.shape[1] < n_pairs or workspace.shape[2] != n_padded:
        workspace = _filter_workspace(n_t, sy, n_padded)
    full = _full_response(response, n_padded)
    if out is None or out.shape != (n_t, nu + 2, sy) or not out.flags.c_contiguous:
        out = np.empty((n_t, nu + 2, sy), dtype=np.float32)
    chunk = workspace.shape[0]
    for t0 in range(0, n_t, chunk):
        t1 = min(n_t, t0 + chunk)
        work = workspace[: t1 - t0, :n_pairs]
        pack_row_pairs(np.asarray(rows[t0:t1], dtype=np.float32), work.view(np.float32))
        spec = scipy.fft.fft(work, axis=-1, workers=workers, overwrite_x=True)
        spec *= full
        filtered = scipy.fft.ifft(spec, axis=-1, workers=workers, overwrite_x=True)
        unpack_row_pairs(filtered.view(np.float32), nu, sy, out, t0)
        del spec, filtered
    return out


def _filter_workspace(n_t: int, sy: int, n_padded: int) -> np.ndarray:
    """complex64 (chunk, (sy + 1) // 2, n_padded) workspace for :func:`_filtered_projections`."""
    n_pairs = (sy + 1) // 2
    chunk = max(1, min(n_t, _FILTER_CHUNK_BYTES // (n_pairs * n_padded * 8)))
    return np.empty((chunk, n_pairs, n_padded), dtype=np.complex64)


def _check_inputs(aligned_stack, tilt_angles_deg, thickness_px, slab_size, filter, device):
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {_DEVICES}, not {device!r}")
    if filter not in _FILTERS:
        raise ValueError(f"filter must be one of {_FILTERS}, not {filter!r}")
    if aligned_stack.ndim != 3:
        raise ValueError(f"aligned_stack must be (n_tilts, ny, nu), got shape {aligned_stack.shape}")
    n_t = aligned_stack.shape[0]
    angles = np.asarray(tilt_angles_deg, dtype=np.float64).ravel()
    if angles.size != n_t:
        raise ValueError(f"{angles.size} tilt angles for a stack of {n_t} images")
    nz = int(thickness_px)
    if nz < 1 or slab_size < 1:
        raise ValueError("thickness_px and slab_size must be positive")
    if device == "cuda":
        from stasnake.kernels.backproject_cuda import require_cuda

        require_cuda()
    return angles, nz


def _iter_slabs(aligned_stack, angles, nz, slab_size, filter, sirt_iterations, device, out=None):
    """Yield ``(y0, slab, in_place)`` for the y-slabs of the reconstruction.

    ``slab`` is the (nz, sy, nu) float32 reconstruction of rows y0..y0+sy. With
    ``out`` a float32 numpy array (or memmap) of the volume, the CPU kernel
    writes straight into ``out[:, y0:y0+sy, :]`` and ``in_place`` is True.
    Otherwise ``slab`` is a view of one reused buffer, valid until the next
    slab is requested (one slab alive at a time: the memory bound).
    """
    n_t, ny, nu = aligned_stack.shape
    n_padded = _padded_length(nu)
    response = ramp_filter(n_padded, filter, sirt_iterations).astype(np.float32)
    rad = np.radians(angles)
    cos_t = np.cos(rad).astype(np.float32)
    sin_t = np.sin(rad).astype(np.float32)
    weights = tilt_weights(angles).astype(np.float32)
    workers = os.cpu_count() or 1
    direct = device == "cpu" and isinstance(out, np.ndarray) and out.dtype == np.float32
    buffer = None
    workspace = _filter_workspace(n_t, min(slab_size, ny), n_padded)
    proj_buffer = np.empty((n_t, nu + 2, min(slab_size, ny)), dtype=np.float32)
    if device == "cuda":
        from numba import cuda

        from stasnake.kernels.backproject_cuda import backproject_slab_cuda

        cos_t, sin_t, weights = (cuda.to_device(a) for a in (cos_t, sin_t, weights))

    for y0 in range(0, ny, slab_size):
        y1 = min(ny, y0 + slab_size)
        # rows are read (and converted to float32) chunk by chunk into the filter's workspace
        proj = _filtered_projections(aligned_stack[:, y0:y1, :], response, n_padded, workers, workspace,
                                     out=proj_buffer)
        if device == "cuda":
            slab = backproject_slab_cuda(proj, cos_t, sin_t, weights, nz, nu).transpose(0, 2, 1)
        else:
            if direct:
                slab = out[:, y0:y1, :]
            else:
                if buffer is None:
                    buffer = np.empty((nz, min(slab_size, ny), nu), dtype=np.float32)
                slab = buffer[:, : y1 - y0, :]
            backproject_slab(proj, cos_t, sin_t, weights, nz, nu, slab)
        del proj
        yield y0, slab, direct
        del slab


def reconstruct_wbp(
    aligned_stack: np.ndarray,
    tilt_angles_deg,
    thickness_px: int,
    out: np.ndarray | None = None,
    slab_size: int = 64,
    filter: str = "ramp",
    device: str = "cpu",
    sirt_iterations: int = 10,
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
        memmap). Allocated as float32 when omitted.
    slab_size : int
        Number of y rows reconstructed at a time (memory bound; the result does
        not depend on it).
    filter : {"ramp", "cosine", "hamming", "sirt-like", "none"}
        Weighting along U (see :func:`ramp_filter`).
    device : {"cpu", "cuda"}
        Where the back-projection runs. "cuda" needs numba.cuda with a GPU (or
        the simulator, ``NUMBA_ENABLE_CUDASIM=1``); RuntimeError otherwise.
    sirt_iterations : int
        Iterations mimicked by ``filter="sirt-like"``.

    Returns
    -------
    np.ndarray
        (thickness_px, ny, nu) volume (``out`` when given), same contrast as the
        input images.
    """
    angles, nz = _check_inputs(aligned_stack, tilt_angles_deg, thickness_px, slab_size, filter, device)
    _, ny, nu = aligned_stack.shape
    shape = (nz, ny, nu)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif tuple(out.shape) != shape:
        raise ValueError(f"out has shape {out.shape}, expected {shape}")
    for y0, slab, in_place in _iter_slabs(aligned_stack, angles, nz, slab_size, filter, sirt_iterations, device,
                                          out=out):
        if not in_place:
            out[:, y0:y0 + slab.shape[1], :] = slab
        del slab
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
    sirt_iterations: int = 10,
) -> None:
    """Reconstruct by WBP straight into an MRC file, slab by slab (atomic write).

    Each finished y-slab is written with positioned writes through
    :class:`stasnake.io.mrc.MrcSlabWriter` (no memory map; written pages are
    flushed and dropped from the page cache), so the peak RSS is bounded by one
    slab plus the input stack pages read, not by the tomogram. The file
    appears under ``path`` only when complete.

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
    sirt_iterations : int
        Iterations mimicked by ``filter="sirt-like"``.
    """
    from stasnake.io.mrc import MrcSlabWriter

    angles, nz = _check_inputs(aligned_stack, tilt_angles_deg, thickness_px, slab_size, filter, device)
    _, ny, nu = aligned_stack.shape
    with MrcSlabWriter(path, (nz, ny, nu), pixel_size_angstrom, dtype=dtype) as writer:
        for y0, slab, _ in _iter_slabs(aligned_stack, angles, nz, slab_size, filter, sirt_iterations, device):
            writer.write_y_slab(y0, slab)
            del slab


def fourier_crop_axis(array: np.ndarray, m: int, axis: int, workers: int | None = None) -> np.ndarray:
    """Resample a real array to length ``m`` along one axis by Fourier cropping.

    ``irfft(rfft(a)[: m // 2 + 1], n=m)`` with "forward" normalisation: the
    frequencies below the new Nyquist and the mean are kept exactly; for even
    ``m`` the new Nyquist coefficient keeps its real part (symmetric split of
    the +-m/2 terms), so the result is real and the operator is the same along
    every axis. Applied along several axes it gives a separable binning whose
    order does not matter.

    Parameters
    ----------
    array : np.ndarray
        Real array.
    m : int
        New length along ``axis`` (<= the old one).
    axis : int
        Axis to resample.
    workers : int, optional
        Threads for scipy.fft.

    Returns
    -------
    np.ndarray
        float32 (when ``array`` is float32) or float64 array with ``m`` along ``axis``.
    """
    workers = workers or os.cpu_count() or 1
    n = array.shape[axis]
    if m == n:
        return np.asarray(array)
    spec = scipy.fft.rfft(array, axis=axis, norm="forward", workers=workers)
    keep = [slice(None)] * spec.ndim
    keep[axis] = slice(0, m // 2 + 1)
    return scipy.fft.irfft(spec[tuple(keep)], n=m, axis=axis, norm="forward", workers=workers)


def bin_volume_fourier(volume: np.ndarray, factor: int, workers: int | None = None) -> np.ndarray:
    """Bin a (z, y, x) volume by an integer factor by Fourier cropping.

    Each axis of length n becomes ``n // factor``; the pixel size multiplies by
    ``factor``. Frequencies below the new Nyquist are kept exactly (including the
    mean), the rest are discarded (no aliasing, unlike real-space averaging).
    The crop is separable: :func:`fourier_crop_axis` along x, y then z (the same
    operator as the slab-wise :func:`bin_mrc_fourier`). Holds the volume and one
    complex transform along an axis in memory (about 2x the volume); use
    :func:`bin_mrc_fourier` for files larger than memory.

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
    new_shape = tuple(n // factor for n in vol.shape)
    if min(new_shape) < 1:
        raise ValueError(f"volume {vol.shape} too small for binning by {factor}")
    res = vol
    for axis in (2, 1, 0):
        res = fourier_crop_axis(res, new_shape[axis], axis, workers)
    return np.asarray(res, dtype=np.float32)


def _pread_exact(fd: int, nbytes: int, offset: int) -> bytes:
    chunks = []
    while nbytes:
        b = os.pread(fd, nbytes, offset)
        if not b:
            raise EOFError(f"file ends before byte {offset + nbytes}")
        chunks.append(b)
        nbytes -= len(b)
        offset += len(b)
    return b"".join(chunks)


def bin_mrc_fourier(
    in_path,
    out_path,
    factor: int,
    dtype: str = "float32",
    block_bytes: int = 64 * 2**20,
    workers: int | None = None,
) -> tuple[int, int, int]:
    """Bin an MRC volume by Fourier cropping, slab by slab with bounded memory.

    Same result as :func:`bin_volume_fourier` (to float32 rounding) without
    holding the volume or its transform in memory. Fourier cropping is
    separable, so it is done in two passes:

    1. z-blocks of planes are read with positioned reads (no memory map), each
       plane is cropped in (y, x) with a 2-D real FFT (``rfft2`` -> keep the
       ``ny//f x nx//f`` lowest frequencies -> ``irfft2``), and the
       (nz, ny//f, nx//f) result goes to a temporary raw file next to the
       output;
    2. y-chunks of that file (all z) are cropped along z with a 1-D real FFT
       and written as y-slabs by :class:`stasnake.io.mrc.MrcSlabWriter`.

    Both passes use :func:`fourier_crop_axis`, the operator of
    :func:`bin_volume_fourier`, so the two agree to float32 rounding. The
    method is exact (no block overlap or edge effects): every output voxel
    sees the whole input along each axis.

    Parameters
    ----------
    in_path, out_path : str or PathLike
        Input MRC volume (z, y, x) and binned output (written atomically).
    factor : int
        Binning factor >= 1; each axis of length n becomes ``n // factor``, the
        pixel size multiplies by ``factor``.
    dtype : {"float32", "float16"}
        Storage mode of the output.
    block_bytes : int
        Target size of the float32 blocks held in memory per pass.
    workers : int, optional
        Threads for scipy.fft (default: all CPUs).

    Returns
    -------
    tuple of int
        (nz // factor, ny // factor, nx // factor) shape written.
    """
    import tempfile
    from pathlib import Path

    import mrcfile
    from mrcfile.utils import data_dtype_from_header

    from stasnake.errors import InputError
    from stasnake.io.mrc import MrcSlabWriter, read_mrc_header

    factor = int(factor)
    if factor < 1:
        raise ValueError(f"factor must be >= 1, not {factor}")
    in_path = Path(in_path)
    info = read_mrc_header(in_path)
    if len(info["shape"]) != 3:
        raise InputError(in_path, f"not a 3-D volume (shape {info['shape']})")
    nz, ny, nx = info["shape"]
    mz, my, mx = nz // factor, ny // factor, nx // factor
    if min(mz, my, mx) < 1:
        raise InputError(in_path, f"volume {info['shape']} too small for binning by {factor}")
    with mrcfile.open(in_path, header_only=True, permissive=True) as mrc:
        src_dtype = data_dtype_from_header(mrc.header)
        data_offset = int(mrc.header.nbytes) + int(mrc.header.nsymbt)
    workers = workers or os.cpu_count() or 1
    apix = info["pixel_size_angstrom"] * factor
    plane_in = ny * nx
    plane_mid = my * mx

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd_in = os.open(in_path, os.O_RDONLY)
    try:
        with tempfile.TemporaryFile(dir=out_path.parent, prefix=".bin_mrc_fourier.") as tmp, \
                MrcSlabWriter(out_path, (mz, my, mx), apix, dtype=dtype) as writer:
            fd_mid = tmp.fileno()
            # pass 1: (y, x) crop of z-blocks of planes
            zb = max(1, block_bytes // (plane_in * 4))
            for z0 in range(0, nz, zb):
                z1 = min(nz, z0 + zb)
                raw = _pread_exact(fd_in, (z1 - z0) * plane_in * src_dtype.itemsize,
                                   data_offset + z0 * plane_in * src_dtype.itemsize)
                planes = np.frombuffer(raw, dtype=src_dtype).reshape(z1 - z0, ny, nx).astype(np.float32)
                small = fourier_crop_axis(fourier_crop_axis(planes, mx, 2, workers), my, 1, workers)
                os.pwrite(fd_mid, np.ascontiguousarray(small, np.float32).tobytes(), z0 * plane_mid * 4)
                if hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(fd_in, 0, 0, os.POSIX_FADV_DONTNEED)
            # pass 2: z crop of y-chunks (all z), written as y-slabs
            yb = max(1, block_bytes // (nz * mx * 4))
            for y0 in range(0, my, yb):
                y1 = min(my, y0 + yb)
                run = (y1 - y0) * mx
                cols = np.empty((nz, y1 - y0, mx), np.float32)
                for z in range(nz):
                    cols[z] = np.frombuffer(_pread_exact(fd_mid, run * 4, (z * plane_mid + y0 * mx) * 4),
                                            np.float32).reshape(y1 - y0, mx)
                writer.write_y_slab(y0, fourier_crop_axis(cols, mz, 0, workers).astype(np.float32))
    finally:
        os.close(fd_in)
    return mz, my, mx
