"""Oversampling of spherical VLP surfaces: crop points with orientations normal to the surface.

Step 2 of the Dynamo HIV-1 VLP protocol: each dipole (centre + radius) becomes a
set of crop points spread regularly over its sphere, every one oriented with
its particle z axis along the outward surface normal (Dynamo convention, as the
synthetic lattice of :mod:`stasnake.synth.lattice`: ``R[:, 2]`` = outward
normal for the active rotation ``R`` of :mod:`stasnake.geometry.euler`). The
in-plane angle ``narot`` is arbitrary at this stage (0, or random on request).

Points are a golden-spiral (Fibonacci) set whose count is tuned so that the
**mean nearest-neighbour chord distance** equals the requested spacing (within
a few percent for spheres with more than ~10 points).

Spacing default (protocol): 120 px between crop points for 256 px boxes at
1.35 Å/px, "a bit less than half the box": :data:`PROTOCOL_SPACING_FRACTION_OF_BOX`
(120/256) of the crop box side, or :data:`PROTOCOL_SPACING_ANGSTROM` (162 Å) in
physical units; :func:`spacing_for_box` applies the first.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from stasnake.io.dynamo_table import new_table

logger = logging.getLogger(__name__)

#: Protocol crop-point spacing as a fraction of the crop box side (120 px / 256 px).
PROTOCOL_SPACING_FRACTION_OF_BOX = 120.0 / 256.0
#: Protocol crop-point spacing in Å (120 px at 1.35 Å/px).
PROTOCOL_SPACING_ANGSTROM = 120.0 * 1.35

_GOLDEN_ANGLE = np.pi * (3.0 - 5.0**0.5)


def spacing_for_box(box_px: int, fraction: float = PROTOCOL_SPACING_FRACTION_OF_BOX) -> float:
    """Crop-point spacing in pixels for a crop box of side ``box_px`` (protocol: 120 for 256)."""
    return float(fraction) * float(box_px)


def fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` near-uniform unit vectors (x, y, z) on a golden spiral, shape (n, 3).

    Point ``i`` has ``z = 1 - (2 i + 1) / n`` and azimuth ``i`` times the golden
    angle (``n = 1`` gives the single point (1, 0, 0)).
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, not {n}")
    i = np.arange(n, dtype=np.float64)
    z = 1.0 - (2.0 * i + 1.0) / n
    rho = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    phi = _GOLDEN_ANGLE * i
    return np.column_stack([rho * np.cos(phi), rho * np.sin(phi), z])


def _mean_nn(points: np.ndarray) -> float:
    if len(points) < 2:
        return np.inf
    d, _ = cKDTree(points).query(points, k=2)
    return float(d[:, 1].mean())


def sphere_point_count(radius_px: float, spacing_px: float) -> int:
    """Number of golden-spiral points on a sphere whose mean nearest-neighbour distance ≈ spacing.

    Starts from hexagonal packing (``8 pi r^2 / (sqrt(3) s^2)``) and corrects
    the count with the measured mean nearest-neighbour distance (a few passes).

    Parameters
    ----------
    radius_px, spacing_px : float
        Sphere radius and wanted spacing, same unit (pixels).

    Returns
    -------
    int
        At least 1.
    """
    r, s = float(radius_px), float(spacing_px)
    if r <= 0 or s <= 0:
        raise ValueError(f"radius and spacing must be > 0, got {r} and {s}")
    n = max(1, int(round(8.0 * np.pi * r * r / (np.sqrt(3.0) * s * s))))
    for _ in range(4):
        if n < 2:
            break
        ratio = _mean_nn(fibonacci_sphere(n) * r) / s
        new = max(1, int(round(n * ratio * ratio)))
        if new == n:
            break
        n = new
    return n


def normals_to_dynamo_euler(normals, narot_deg=0.0) -> np.ndarray:
    """Dynamo Euler angles whose particle z axis is each normal.

    ``R[:, 2] = (sin tdrot sin tilt, cos tdrot sin tilt, cos tilt)`` (see
    :mod:`stasnake.geometry.euler`), so ``tilt = acos(n_z)`` and
    ``tdrot = atan2(n_x, n_y)``; ``narot`` never moves the z axis.

    Parameters
    ----------
    normals : array_like
        (n, 3) unit vectors (x, y, z).
    narot_deg : float or array_like
        In-plane angle(s) in degrees.

    Returns
    -------
    np.ndarray
        (n, 3) (tdrot, tilt, narot) in degrees.
    """
    v = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    tilt = np.degrees(np.arccos(np.clip(v[:, 2], -1.0, 1.0)))
    tdrot = np.degrees(np.arctan2(v[:, 0], v[:, 1]))
    narot = np.broadcast_to(np.asarray(narot_deg, dtype=np.float64), tilt.shape)
    return np.column_stack([tdrot, tilt, narot])


def oversample_sphere(
    center_xyz,
    radius_px: float,
    spacing_px: float,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Crop points on a sphere at a regular spacing, oriented along the outward normal.

    Parameters
    ----------
    center_xyz : array_like
        (3,) sphere centre (x, y, z) in pixels (any origin; the points share it).
    radius_px : float
        Sphere radius in pixels.
    spacing_px : float
        Wanted mean nearest-neighbour distance between points, pixels.
    rng : np.random.Generator, optional
        When given, ``narot`` is uniform random in [-180, 180) degrees;
        otherwise 0.

    Returns
    -------
    positions : np.ndarray
        (n, 3) points (x, y, z) in pixels, ``|p - centre| = radius``.
    eulers_deg : np.ndarray
        (n, 3) Dynamo (tdrot, tilt, narot) in degrees; the particle z axis
        ``R[:, 2]`` is the outward normal ``(p - centre) / radius``.
    """
    center = np.asarray(center_xyz, dtype=np.float64).reshape(3)
    normals = fibonacci_sphere(sphere_point_count(radius_px, spacing_px))
    narot = 0.0 if rng is None else rng.uniform(-180.0, 180.0, len(normals))
    return center + float(radius_px) * normals, normals_to_dynamo_euler(normals, narot)


def crop_table_from_dipoles(
    dipoles_df: pd.DataFrame,
    spacing_px: float,
    tomo_number: int,
    tomogram_shape_zyx,
    radius_offset_px: float = 0.0,
    rng: np.random.Generator | None = None,
    **table_columns,
) -> tuple[pd.DataFrame, int]:
    """Dynamo crop table of oversampled points on every dipole's sphere.

    Parameters
    ----------
    dipoles_df : pd.DataFrame
        Output of :func:`stasnake.picking.dipoles.read_dipoles`: ``center_x/y/z``
        (full-size 1-based pixels), ``radius_px`` and optionally ``vlp``
        (default 1..n).
    spacing_px : float
        Mean nearest-neighbour distance between crop points, full-size pixels
        (protocol: :func:`spacing_for_box` of the crop box).
    tomo_number : int
        Value of the table's ``tomo`` column.
    tomogram_shape_zyx : tuple of int
        Full-size tomogram shape (nz, ny, nx): points with a 1-based coordinate
        outside ``[1, n]`` on any axis are dropped.
    radius_offset_px : float
        Added to every dipole radius (e.g. negative to sample the lattice
        inside the membrane that was clicked). Default 0: the clicked sphere.
    rng : np.random.Generator, optional
        Random ``narot`` (see :func:`oversample_sphere`); default 0.
    **table_columns
        Further constant columns for :func:`stasnake.io.dynamo_table.new_table`
        (e.g. ``apix``, ``ymintilt``, ``ymaxtilt``).

    Returns
    -------
    table : pd.DataFrame
        Dynamo table: tags 1..n, ``x, y, z`` full-size 1-based pixels, zero
        shifts, ``tdrot, tilt, narot`` from the outward normals, ``tomo``, and
        ``reg`` = the VLP number (``vlp`` column, i.e. the dipole's 1-based row
        in the annotation file).
    n_dropped : int
        Number of points outside the tomogram (also logged).
    """
    shape = tuple(int(s) for s in tomogram_shape_zyx)
    if len(shape) != 3:
        raise ValueError(f"tomogram_shape_zyx must be (nz, ny, nx), got {tomogram_shape_zyx!r}")
    upper = np.array([shape[2], shape[1], shape[0]], dtype=np.float64)
    vlps = (
        dipoles_df["vlp"].to_numpy(dtype=np.int64)
        if "vlp" in dipoles_df.columns
        else np.arange(1, len(dipoles_df) + 1)
    )
    centres = dipoles_df[["center_x", "center_y", "center_z"]].to_numpy(dtype=np.float64)
    radii = dipoles_df["radius_px"].to_numpy(dtype=np.float64) + float(radius_offset_px)
    pos_list, euler_list, reg_list = [], [], []
    for vlp, centre, radius in zip(vlps, centres, radii, strict=True):
        if radius <= 0:
            raise ValueError(f"VLP {vlp}: radius {radius:g} px after the offset is not positive")
        pos, eul = oversample_sphere(centre, radius, spacing_px, rng)
        pos_list.append(pos)
        euler_list.append(eul)
        reg_list.append(np.full(len(pos), vlp, dtype=np.int64))
    pos = np.concatenate(pos_list) if pos_list else np.zeros((0, 3))
    eul = np.concatenate(euler_list) if euler_list else np.zeros((0, 3))
    reg = np.concatenate(reg_list) if reg_list else np.zeros(0, dtype=np.int64)
    inside = np.all((pos >= 1.0) & (pos <= upper), axis=1)
    n_dropped = int((~inside).sum())
    if n_dropped:
        logger.info("tomogram %d: %d of %d crop points outside the tomogram dropped",
                    tomo_number, n_dropped, len(pos))  # fmt: skip
    pos, eul, reg = pos[inside], eul[inside], reg[inside]
    table = new_table(
        len(pos), x=pos[:, 0], y=pos[:, 1], z=pos[:, 2], tdrot=eul[:, 0], tilt=eul[:, 1],
        narot=eul[:, 2], tomo=int(tomo_number), reg=reg, **table_columns,
    )  # fmt: skip
    return table, n_dropped
