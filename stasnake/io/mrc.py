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
    """Write a large volume slab by slab into a memory-mapped MRC file.

    The file appears under its final name only when :meth:`close` succeeds.

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
    """

    def __init__(self, path, shape, pixel_size_angstrom: float, dtype: str = "float32"):
        self._final = Path(path)
        self._ctx = atomic_output(self._final)
        tmp = self._ctx.__enter__()
        self._mrc = mrcfile.new_mmap(tmp, shape=tuple(shape), mrc_mode=2 if dtype == "float32" else 12, overwrite=True)
        self._mrc.voxel_size = float(pixel_size_angstrom)
        self.data = self._mrc.data

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self._mrc.close()
            self._ctx.__exit__(exc_type, exc, tb)
        return False

    def close(self) -> None:
        """Update header statistics, flush and move the file into place."""
        _update_header_stats_by_slab(self._mrc)
        self._mrc.close()
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
