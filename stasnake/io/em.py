"""TOM/Dynamo ``.em`` volumes (EM-format "V", 512-byte header).

Layout (TOM toolbox ``tom_emread.m``, Nickell et al. 2005):

* byte 0: machine coding, 0 OS-9 / 3 SGI / 5 Mac = big-endian, 6 PC =
  little-endian (1 VAX, 2 Convex, 4 Sun are refused);
* byte 3: data type, 1 int8, 2 int16, 4 int32, 5 float32, 8 complex64,
  9 float64, 10 complex128;
* bytes 4-15: int32 sizes nx, ny, nz;
* bytes 16-95: comment; bytes 96-255: 40 int32 parameters (7th "OBJ" = object
  pixel size in Å x 1000; 1st = voltage); bytes 256-511: user data;
* data from byte 512, **x fastest, then y, then z** (Fortran order of an
  (x, y, z) MATLAB array).

Reading the data in C order with shape (nz, ny, nx) therefore gives the
same (z, y, x) array that mrcfile gives for the same volume; no transpose is
needed. (The ``emfile`` package does the same, but uses the native byte order
and has no size check, so this module parses the header itself.)
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from stasnake.errors import InputError
from stasnake.io.atomic import atomic_output

HEADER_BYTES = 512
_DTYPES = {1: "i1", 2: "i2", 4: "i4", 5: "f4", 8: "c8", 9: "f8", 10: "c16"}
_CODES = {np.dtype(v).newbyteorder("<").str[1:]: k for k, v in _DTYPES.items()}
_BIG_ENDIAN = {0, 3, 5}
_LITTLE_ENDIAN = {6}


def read_em_header(path: str | os.PathLike) -> dict:
    """Parse the 512-byte header of an ``.em`` file.

    Returns
    -------
    dict
        ``shape`` (z, y, x), ``dtype`` (numpy dtype with byte order),
        ``machine``, ``dtype_code``, ``comment``, ``params`` (the 40 int32
        parameters), ``voltage_kv`` and ``pixel_size_angstrom`` (OBJ / 1000; 0.0
        when unset).

    Raises
    ------
    InputError
        Missing file, short header, unknown machine or data type, negative
        size, or a file shorter than the header plus the data.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "EM file does not exist")
    with open(path, "rb") as fh:
        raw = fh.read(HEADER_BYTES)
    if len(raw) < HEADER_BYTES:
        raise InputError(
            path, f"not an EM file: {len(raw)} bytes, the header alone has {HEADER_BYTES}"
        )
    machine, dtype_code = raw[0], raw[3]
    if machine in _BIG_ENDIAN:
        order = ">"
    elif machine in _LITTLE_ENDIAN:
        order = "<"
    else:
        raise InputError(
            path, f"not a readable EM file: machine byte {machine} (expected 0, 3, 5 or 6)"
        )
    if dtype_code not in _DTYPES:
        raise InputError(path, f"not a readable EM file: data type byte {dtype_code}")
    dtype = np.dtype(order + _DTYPES[dtype_code])
    nx, ny, nz = (int(v) for v in np.frombuffer(raw, dtype=order + "i4", count=3, offset=4))
    if min(nx, ny, nz) < 1:
        raise InputError(path, f"not a readable EM file: sizes {nx} x {ny} x {nz}")
    params = np.frombuffer(raw, dtype=order + "i4", count=40, offset=96).astype(np.int64)
    expected = HEADER_BYTES + nx * ny * nz * dtype.itemsize
    actual = path.stat().st_size
    if actual < expected:
        raise InputError(
            path,
            f"truncated EM file: {actual} bytes, header says {expected} ({nx}x{ny}x{nz} {dtype})",
        )
    return {
        "shape": (nz, ny, nx),
        "dtype": dtype,
        "machine": machine,
        "dtype_code": dtype_code,
        "comment": raw[16:96].split(b"\0", 1)[0].decode("latin-1").strip(),
        "params": params,
        "voltage_kv": float(params[0]),
        "pixel_size_angstrom": float(params[6]) / 1000.0,
    }


def read_em(path: str | os.PathLike, mmap: bool = False) -> tuple[np.ndarray, dict]:
    """Read an ``.em`` volume.

    Parameters
    ----------
    path : str or PathLike
        The file.
    mmap : bool
        Return a read-only memory map instead of loading the data.

    Returns
    -------
    data : np.ndarray
        (z, y, x) array (a single image is (1, y, x), as in the file), in
        native byte order unless ``mmap``.
    header : dict
        As :func:`read_em_header`.
    """
    path = Path(path)
    header = read_em_header(path)
    if mmap:
        data = np.memmap(
            path, dtype=header["dtype"], mode="r", offset=HEADER_BYTES, shape=header["shape"]
        )
    else:
        count = int(np.prod(header["shape"]))
        with open(path, "rb") as fh:
            fh.seek(HEADER_BYTES)
            data = np.fromfile(fh, dtype=header["dtype"], count=count)
        data = data.reshape(header["shape"]).astype(header["dtype"].newbyteorder("="), copy=False)
    return data, header


def write_em(
    path: str | os.PathLike,
    data: np.ndarray,
    pixel_size_angstrom: float = 0.0,
    comment: str = "",
) -> None:
    """Write a (z, y, x) volume (or (y, x) image) as a little-endian ``.em`` file atomically.

    Parameters
    ----------
    path : str or PathLike
        Output file.
    data : np.ndarray
        (z, y, x) or (y, x) array of int8, int16, int32, float32, float64,
        complex64 or complex128 (other dtypes are converted to float32).
    pixel_size_angstrom : float
        Stored as the OBJ parameter (Å x 1000, rounded).
    comment : str
        Up to 80 ASCII characters.
    """
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(f"data must be 2-D or 3-D, got shape {data.shape}")
    key = data.dtype.newbyteorder("<").str[1:]
    if key not in _CODES:
        data, key = data.astype(np.float32), "f4"
    header = np.zeros(HEADER_BYTES, dtype=np.uint8)
    header[0], header[3] = 6, _CODES[key]
    nz, ny, nx = data.shape
    header[4:16] = np.frombuffer(np.array([nx, ny, nz], dtype="<i4").tobytes(), dtype=np.uint8)
    text = comment.encode("ascii", errors="replace")[:80]
    header[16 : 16 + len(text)] = np.frombuffer(text, dtype=np.uint8)
    params = np.zeros(40, dtype="<i4")
    params[6] = int(round(pixel_size_angstrom * 1000))
    header[96:256] = np.frombuffer(params.tobytes(), dtype=np.uint8)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(header.tobytes())
            fh.write(np.ascontiguousarray(data, dtype=np.dtype("<" + key)).tobytes())
