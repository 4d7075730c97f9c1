"""Coordinate conventions: array indices, Dynamo table positions, box centres, RELION 5.

Axis orders: arrays are indexed ``[iz, iy, ix]`` (mrcfile order); every
coordinate triple handled here is ``(x, y, z)`` in pixels unless the name
says Å. See docs/conventions.md for the evidence behind each rule.

* Dynamo table positions are 1-based: the centre of array element
  ``[iz, iy, ix]`` has table coordinates ``(ix + 1, iy + 1, iz + 1)``.
* The centre of a box, image or tomogram of side ``n`` is the 0-based index
  ``n // 2`` (Dynamo's ``n/2 + 1`` in 1-based terms for even ``n``; the FFT
  centre; IMOD's ``n/2.`` and RELION's ``int(n/2)`` for even ``n``).
* RELION (3.1 to 5) pixel coordinates are 0-based voxel positions: RELION
  projects a tomogram point ``p`` from ``p - int(size/2)``
  (``Tomogram::setProjectionMatrix``), so RELION pixel = table - 1.
* RELION 5 ``rlnCenteredCoordinate{X,Y,Z}Angst = (p - size/2) * pixel_size``
  with ``p`` the RELION pixel position in unbinned tilt-series pixels and
  ``size`` the unbinned tomogram size (float division,
  ``ParticleSet::setParticleCoordDecenteredPixel`` and
  ``TomogramSet::loadTomogram``).
"""

from __future__ import annotations

import numpy as np

#: Add to a 1-based Dynamo table coordinate to get RELION's 0-based pixel position.
RELION_PIXEL_FROM_TABLE = -1.0


def box_center(n):
    """0-based index of the centre of a box of side ``n`` on one axis.

    Parameters
    ----------
    n : int or array_like of int
        Side length(s) in pixels.

    Returns
    -------
    int or np.ndarray
        ``n // 2``: 2 for n = 4 and for n = 5. The 1-based (table) position of
        the centre is ``n // 2 + 1``.
    """
    if np.ndim(n) == 0:
        return int(n) // 2
    return np.asarray(n, dtype=np.int64) // 2


def table_to_array_index(xyz_1based) -> np.ndarray:
    """0-based array positions from 1-based table positions.

    Parameters
    ----------
    xyz_1based : array_like
        Shape (3,) or (n, 3): table (x, y, z) in pixels.

    Returns
    -------
    np.ndarray
        Same shape, float: (ix, iy, iz) = (x - 1, y - 1, z - 1), still in
        (x, y, z) order; the voxel is ``volume[iz, iy, ix]`` when integral.
    """
    return np.asarray(xyz_1based, dtype=np.float64) - 1.0


def array_index_to_table(ixyz) -> np.ndarray:
    """1-based table positions from 0-based array positions (inverse of :func:`table_to_array_index`).

    Parameters
    ----------
    ixyz : array_like
        Shape (3,) or (n, 3): 0-based (ix, iy, iz) in (x, y, z) order.

    Returns
    -------
    np.ndarray
        Same shape, float: (ix + 1, iy + 1, iz + 1).
    """
    return np.asarray(ixyz, dtype=np.float64) + 1.0


def tomogram_center(shape_zyx) -> np.ndarray:
    """0-based array position of the centre of a volume, in (x, y, z) order.

    Parameters
    ----------
    shape_zyx : tuple of int
        Array shape (nz, ny, nx) as mrcfile reads it.

    Returns
    -------
    np.ndarray
        int64 array (nx // 2, ny // 2, nz // 2). Add 1 for table coordinates.
    """
    shape = tuple(int(s) for s in shape_zyx)
    if len(shape) != 3:
        raise ValueError(f"shape_zyx must have 3 entries (nz, ny, nx), got {shape_zyx!r}")
    nz, ny, nx = shape
    return np.array([nx // 2, ny // 2, nz // 2], dtype=np.int64)


def to_relion5_centered_angstrom(
    xyz_1based, tomo_size_xyz, pixel_size_angstrom: float
) -> np.ndarray:
    """RELION 5 ``rlnCenteredCoordinate{X,Y,Z}Angst`` from 1-based table positions.

    Parameters
    ----------
    xyz_1based : array_like
        Shape (3,) or (n, 3): table (x, y, z) in pixels of the tomogram whose
        size is ``tomo_size_xyz`` (unbinned tilt-series pixels for RELION).
    tomo_size_xyz : array_like
        (nx, ny, nz) of that tomogram in pixels (``rlnTomoSizeX/Y/Z``).
    pixel_size_angstrom : float
        Pixel size in Å (``rlnTomoTiltSeriesPixelSize``).

    Returns
    -------
    np.ndarray
        Same shape: ``((xyz - 1) - size / 2) * pixel_size`` in Å. The voxel at
        0-based index ``size / 2`` (the centre ``n // 2`` for even ``n``) maps to 0.
    """
    xyz = np.asarray(xyz_1based, dtype=np.float64)
    size = np.asarray(tomo_size_xyz, dtype=np.float64)
    return (xyz + RELION_PIXEL_FROM_TABLE - size / 2.0) * float(pixel_size_angstrom)


def from_relion5_centered_angstrom(
    centered_angstrom, tomo_size_xyz, pixel_size_angstrom: float
) -> np.ndarray:
    """1-based table positions from RELION 5 centred coordinates (inverse of the above).

    Parameters
    ----------
    centered_angstrom : array_like
        Shape (3,) or (n, 3): ``rlnCenteredCoordinate{X,Y,Z}Angst`` in Å.
    tomo_size_xyz : array_like
        (nx, ny, nz) of the tomogram in pixels.
    pixel_size_angstrom : float
        Pixel size in Å.

    Returns
    -------
    np.ndarray
        Same shape: ``centered / pixel_size + size / 2 + 1`` in pixels.
    """
    c = np.asarray(centered_angstrom, dtype=np.float64)
    size = np.asarray(tomo_size_xyz, dtype=np.float64)
    return c / float(pixel_size_angstrom) + size / 2.0 - RELION_PIXEL_FROM_TABLE
