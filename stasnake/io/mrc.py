"""MRC volumes and stacks via mrcfile.

Arrays are (z, y, x) as mrcfile returns them; for a tilt stack the first axis
is the tilt index. The pixel size in Å travels in the header (``voxel_size``);
stasnake assumes isotropic voxels and says so when a file disagrees.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np

from stasnake.errors import InputError
from stasnake.io.atomic import atomic_output

_WRITE_DTYPES = {"float32": np.float32, "float16": np.float16}


def _open_checked(path: Path, mode: str = "r", mmap: bool = False):
    """Open an MRC file; InputError unless it has a consistent header and complete data.

    Files without the "MAP " ID string (written by older tools, e.g. the real
    human_ribo_mask_32_8_5.mrc of pytom-match-pick) are accepted when their
    header and data size are otherwise consistent.
    """
    if not path.exists():
        raise InputError(path, "file does not exist")
    opener = mrcfile.mmap if mmap else mrcfile.open
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return opener(path, mode=mode, permissive=False)
    except (ValueError, OSError, EOFError) as exc:
        strict_error = exc
    # retry permissively: mrcfile then warns instead of raising and leaves
    # ``data`` as None when the header is unusable or the data block is short
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mrc = opener(path, mode=mode, permissive=True)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(path, f"not a readable MRC file ({exc})") from None
    problems = "; ".join(str(w.message) for w in caught) or str(strict_error)
    if mrc.data is None:
        mrc.close()
        raise InputError(path, f"not a readable MRC file: header without complete data ({problems})")
    header = mrc.header
    if min(int(header.nx), int(header.ny), int(header.nz)) < 1:
        mrc.close()
        raise InputError(path, f"not a readable MRC file: sizes {header.nx} x {header.ny} x {header.nz}")
    return mrc


def _pixel_size(mrc, path: Path) -> float:
    vs = mrc.voxel_size
    sizes = [float(vs.x), float(vs.y), float(vs.z)]
    if mrc.data is not None and mrc.data.ndim == 3 and mrc.header.nz > 1 and sizes[2] == 0:
        sizes[2] = sizes[0]
    nonzero = [s for s in sizes if s > 0]
    if not nonzero:
        return 0.0
    if max(nonzero) - min(nonzero) > 1e-3 * max(nonzero) and mrc.header.ispg != 0:
        raise InputError(path, f"anisotropic voxel size {sizes} Å is not supported")
    return nonzero[0]


def read_mrc(path: str | os.PathLike, mmap: bool = False) -> tuple[np.ndarray, float]:
    """Read an MRC file.

    Parameters
    ----------
    path : str or PathLike
        The MRC file.
    mmap : bool
        Return a read-only memory map instead of loading the data (for
        full-size tomograms; slice it to read only what is needed).

    Returns
    -------
    data : np.ndarray
        (z, y, x) volume, (n, y, x) stack or (y, x) image.
    pixel_size_angstrom : float
        Pixel size from the header in Å (0.0 when the header has none).
    """
    path = Path(path)
    mrc = _open_checked(path, mmap=mmap)
    try:
        if mrc.data is None:
            raise InputError(path, "MRC header without data")
        apix = _pixel_size(mrc, path)
        data = mrc.data if mmap else np.array(mrc.data)
    except Exception:
        mrc.close()
        raise
    if not mmap:
        mrc.close()
    return data, apix


def read_mrc_header(path: str | os.PathLike) -> dict:
    """Return shape (z, y, x), dtype and pixel size (Å) without reading the data."""
    path = Path(path)
    mrc = _open_checked(path, mmap=True)
    with mrc:
        return {
            "shape": tuple(int(s) for s in mrc.data.shape),
            "dtype": str(mrc.data.dtype),
            "pixel_size_angstrom": _pixel_size(mrc, path),
            "is_stack": bool(mrc.is_image_stack()),
        }


def write_mrc(
    path: str | os.PathLike,
    data: np.ndarray,
    pixel_size_angstrom: float,
    dtype: str = "float32",
    stack: bool = False,
) -> None:
    """Write an array to an MRC file atomically.

    Parameters
    ----------
    path : str or PathLike
        Output file.
    data : np.ndarray
        (z, y, x) volume, (n, y, x) stack or (y, x) image.
    pixel_size_angstrom : float
        Pixel size in Å written to the header (all three axes).
    dtype : {"float32", "float16"}
        Storage mode; float16 halves the size of tomograms.
    stack : bool
        Mark a 3-D array as an image stack (tilt series) rather than a volume.
    """
    if dtype not in _WRITE_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_WRITE_DTYPES)}, not {dtype!r}")
    with atomic_output(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(data, dtype=_WRITE_DTYPES[dtype]))
            if stack and data.ndim == 3:
                mrc.set_image_stack()
            mrc.voxel_size = float(pixel_size_angstrom)


class MrcSlabWriter:
    """Write a large volume slab by slab into an MRC file, with bounded memory.

    Slabs go to the file with positioned writes (``os.pwrite``) of contiguous
    rows, never through a memory map, and the written pages are flushed and
    dropped from the page cache after each slab (``fdatasync`` +
    ``posix_fadvise(DONTNEED)``), so neither the process's RSS nor the page
    cache grows with the volume. The header statistics (dmin, dmax, dmean, rms)
    are accumulated in float64 from the slabs as they are written; every voxel
    must be written exactly once (voxels never written read as 0 and are
    counted as 0).

    For small volumes and backward compatibility the attribute :attr:`data`
    returns a writable memory map of the whole volume (dirty pages of a memory
    map count in the RSS); when it was used, the statistics are computed from
    the file slab by slab at :meth:`close` instead.

    The file appears under its final name only when :meth:`close` succeeds
    (:func:`stasnake.io.atomic.atomic_output`).

    Parameters
    ----------
    path : str or PathLike
        Output file.
    shape : tuple of int
        (z, y, x) shape of the volume.
    pixel_size_angstrom : float
        Pixel size in Å.
    dtype : {"float32", "float16"}
        Storage mode.
    drop_cache : bool
        Flush and drop written pages from the page cache after every slab.
    stack : bool
        Mark the file as an image stack (tilt series, ``ispg = 0``) rather than a volume.
    """

    def __init__(self, path, shape, pixel_size_angstrom: float, dtype: str = "float32",
                 drop_cache: bool = True, stack: bool = False):
        if dtype not in _WRITE_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_WRITE_DTYPES)}, not {dtype!r}")
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"shape must be 3 positive sizes (z, y, x), not {shape}")
        self.dtype = np.dtype(_WRITE_DTYPES[dtype])
        self._drop_cache = bool(drop_cache)
        self._final = Path(path)
        self._ctx = atomic_output(self._final)
        self._tmp = self._ctx.__enter__()
        self._fd = None
        self._mrc = None
        try:
            # header + sparse data block of the right size; the data are written below
            with mrcfile.new_mmap(self._tmp, shape=self.shape, mrc_mode=2 if dtype == "float32" else 12,
                                  overwrite=True) as mrc:
                if stack:
                    mrc.set_image_stack()
                mrc.voxel_size = float(pixel_size_angstrom)
                self._data_offset = int(mrc.header.nbytes) + int(mrc.header.nsymbt)
                self._header = mrc.header.copy()
            self._fd = os.open(self._tmp, os.O_RDWR)
        except BaseException as exc:
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._lo, self._hi, self._sum, self._sum_sq, self._count = np.inf, -np.inf, 0.0, 0.0, 0

    # ------------------------------------------------------------------ legacy memmap
    @property
    def data(self) -> np.ndarray:
        """Writable (z, y, x) memory map of the whole volume (legacy; unbounded RSS)."""
        if self._mrc is None:
            self._mrc = mrcfile.mmap(self._tmp, mode="r+")
        return self._mrc.data

    # ------------------------------------------------------------------ slab writes
    def _accumulate(self, block: np.ndarray) -> None:
        """Add a block to the running statistics, one float64 plane at a time (small temporaries)."""
        block = np.asarray(block)
        for plane in block.reshape(-1, block.shape[-1]) if block.ndim < 3 else block:
            b = np.asarray(plane, dtype=np.float64).reshape(-1)
            self._lo = min(self._lo, float(b.min()))
            self._hi = max(self._hi, float(b.max()))
            self._sum += float(b.sum())
            self._sum_sq += float(b @ b)
            self._count += b.size

    def _pwrite(self, array: np.ndarray, offset: int) -> None:
        view = memoryview(np.ascontiguousarray(array)).cast("B")
        while view.nbytes:
            n = os.pwrite(self._fd, view, offset)
            view = view[n:]
            offset += n

    def _flush_drop(self) -> None:
        if self._drop_cache:
            os.fdatasync(self._fd)
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def write_z_slab(self, z0: int, block: np.ndarray) -> None:
        """Write ``block`` (sz, ny, nx) at z planes ``z0 .. z0 + sz`` (one contiguous write)."""
        nz, ny, nx = self.shape
        block = np.asarray(block)
        if block.ndim != 3 or block.shape[1:] != (ny, nx) or not 0 <= z0 <= nz - block.shape[0]:
            raise ValueError(f"z-slab of shape {block.shape} at z0={z0} does not fit volume {self.shape}")
        plane_bytes = ny * nx * self.dtype.itemsize
        for k in range(block.shape[0]):
            plane = np.ascontiguousarray(block[k], dtype=self.dtype)
            self._accumulate(plane[None])
            self._pwrite(plane, self._data_offset + (z0 + k) * plane_bytes)
        self._flush_drop()

    def write_y_slab(self, y0: int, block: np.ndarray) -> None:
        """Write ``block`` (nz, sy, nx) at rows ``y0 .. y0 + sy`` of every z plane.

        In the file a y-slab is one contiguous run of ``sy * nx`` values per z
        plane; it is written with one positioned write per plane.
        """
        nz, ny, nx = self.shape
        block = np.asarray(block)
        if block.ndim != 3 or block.shape[0] != nz or block.shape[2] != nx or not 0 <= y0 <= ny - block.shape[1]:
            raise ValueError(f"y-slab of shape {block.shape} at y0={y0} does not fit volume {self.shape}")
        plane_bytes = ny * nx * self.dtype.itemsize
        row0 = self._data_offset + y0 * nx * self.dtype.itemsize
        for z in range(nz):  # one contiguous (sy, nx) copy at a time: no slab-sized temporary
            plane = np.ascontiguousarray(block[z], dtype=self.dtype)
            self._accumulate(plane[None])
            self._pwrite(plane, row0 + z * plane_bytes)
        self._flush_drop()

    # ------------------------------------------------------------------ closing
    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self._release()
            self._ctx.__exit__(exc_type, exc, tb)
        return False

    def _release(self) -> None:
        if self._mrc is not None:
            self._mrc.close()
            self._mrc = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Write the header statistics, flush and move the file into place."""
        try:
            if self._mrc is not None:
                self._mrc.flush()
                _update_header_stats_by_slab(self._mrc)
                for key in ("dmin", "dmax", "dmean", "rms"):
                    self._header[key] = self._mrc.header[key]
                self._mrc.close()
                self._mrc = None
            else:
                n = int(np.prod(self.shape))
                unwritten = n - self._count
                lo, hi = self._lo, self._hi
                if unwritten > 0:  # sparse file: never-written voxels are zeros
                    lo, hi = min(lo, 0.0), max(hi, 0.0)
                mean = self._sum / n
                self._header.dmin, self._header.dmax, self._header.dmean = lo, hi, mean
                self._header.rms = float(np.sqrt(max(self._sum_sq / n - mean * mean, 0.0)))
            self._pwrite(np.frombuffer(self._header.tobytes(), np.uint8), 0)
            os.fsync(self._fd)
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except BaseException as exc:
            self._release()
            self._ctx.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._release()
        self._ctx.__exit__(None, None, None)


def _update_header_stats_by_slab(mrc, slab: int = 16) -> None:
    """Set dmin, dmax, dmean and rms from slabs along z.

    mrcfile's ``update_header_stats`` computes ``data.std()`` over the whole
    memory map, which allocates a full-size temporary and defeats slab-wise
    writing; this accumulates float64 sums one slab at a time instead.
    """
    data = mrc.data
    n = data.size
    lo, hi, total, total_sq = np.inf, -np.inf, 0.0, 0.0
    for start in range(0, data.shape[0], slab):
        block = np.asarray(data[start:start + slab], dtype=np.float64)
        lo, hi = min(lo, float(block.min())), max(hi, float(block.max()))
        total += float(block.sum())
        total_sq += float(np.square(block).sum())
    mean = total / n
    mrc.header.dmin, mrc.header.dmax, mrc.header.dmean = lo, hi, mean
    mrc.header.rms = float(np.sqrt(max(total_sq / n - mean * mean, 0.0)))
