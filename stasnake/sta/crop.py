"""Crop subtomograms at table positions from a (possibly memory-mapped) tomogram.

Positions are Dynamo table coordinates: (x, y, z) in pixels, 1-based (the
centre of array element ``[iz, iy, ix]`` is ``(ix + 1, iy + 1, iz + 1)``).
A box of side ``b`` has its centre voxel at index ``b // 2``; that voxel is
placed at the rounded position. Rounding is half-up (``floor(p + 0.5)``) so
it is deterministic for exact halves.

Cropping is split into a plan (:func:`plan_crop`: which particles are kept,
where their boxes start, the subpixel remainders; no voxel is read) and a
generator (:func:`iter_crop`) that reads one box at a time, so that a stack
of any length can be written with bounded memory
(:func:`stasnake.io.particle_export.write_particle_stack`).
:func:`crop_particles` does both and returns all boxes in RAM (small sets, tests).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from stasnake.errors import InputError

_EDGE_POLICIES = ("drop", "pad")


@dataclass(frozen=True)
class CropPlan:
    """Where each particle's box lies in the tomogram (no voxel data).

    Attributes
    ----------
    box_size : int
        Side ``b`` of the cubic boxes in pixels.
    tomogram_shape_zyx : tuple of int
        Shape of the tomogram the plan was made for.
    kept : np.ndarray
        (n,) bool, particles that will be cropped.
    inside : np.ndarray
        (n,) bool, particles whose box lies entirely inside the tomogram.
    start_xyz : np.ndarray
        (n, 3) int64 0-based (x, y, z) index of each box's first voxel (may be
        negative or reach past the tomogram for padded boxes).
    remainder_xyz : np.ndarray
        (n, 3) ``position - rounded position`` (x, y, z) in pixels, in [-0.5, 0.5).
    """

    box_size: int
    tomogram_shape_zyx: tuple[int, int, int]
    kept: np.ndarray
    inside: np.ndarray
    start_xyz: np.ndarray
    remainder_xyz: np.ndarray

    @property
    def kept_indices(self) -> np.ndarray:
        """Row indices (0-based, input order) of the kept particles."""
        return np.flatnonzero(self.kept)

    @property
    def n_kept(self) -> int:
        """Number of boxes :func:`iter_crop` yields."""
        return int(self.kept.sum())


def plan_crop(
    tomogram_shape_zyx,
    positions_xyz_1based,
    box_size: int,
    edge_policy: str = "drop",
    source: str = "positions",
) -> CropPlan:
    """Decide which particles are cropped and where their boxes lie.

    Parameters
    ----------
    tomogram_shape_zyx : tuple of int
        (z, y, x) shape of the tomogram.
    positions_xyz_1based : array_like
        (n, 3) particle centres (x, y, z) in 1-based table pixel coordinates
        (Dynamo ``x + dx`` etc. when the shifts should be absorbed).
    box_size : int
        Side ``b`` of the cubic box in pixels.
    edge_policy : {"drop", "pad"}
        "drop": particles whose box leaves the tomogram are excluded.
        "pad": the outside part of the box is filled with the mean of the
        inside part; particles whose box lies entirely outside are still
        excluded.
    source : str
        Name of the table for error messages.

    Returns
    -------
    CropPlan

    Raises
    ------
    InputError
        A position that is not finite (names the row).
    ValueError
        Unknown edge policy, non-positive box size, tomogram shape not 3-D.
    """
    if edge_policy not in _EDGE_POLICIES:
        raise ValueError(f"edge_policy must be one of {_EDGE_POLICIES}, not {edge_policy!r}")
    shape = tuple(int(s) for s in tomogram_shape_zyx)
    if len(shape) != 3:
        raise ValueError(f"tomogram must be (z, y, x), got shape {tomogram_shape_zyx}")
    b = int(box_size)
    if b < 1:
        raise ValueError(f"box_size must be positive, not {box_size}")
    pos = np.asarray(positions_xyz_1based, dtype=np.float64).reshape(-1, 3)
    bad = ~np.isfinite(pos).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(source, f"row {i + 1}: particle position {pos[i].tolist()} is not finite "
                                 f"({int(bad.sum())} such row(s))")  # fmt: skip
    idx0 = pos - 1.0
    rounded = np.floor(idx0 + 0.5)
    start_xyz = rounded.astype(np.int64) - b // 2
    end_xyz = start_xyz + b
    shape_xyz = np.array(shape[::-1])
    inside = np.all((start_xyz >= 0) & (end_xyz <= shape_xyz), axis=1)
    overlaps = np.all((end_xyz > 0) & (start_xyz < shape_xyz), axis=1)
    kept = inside if edge_policy == "drop" else overlaps
    return CropPlan(b, shape, kept, inside, start_xyz, idx0 - rounded)


def crop_box(tomogram: np.ndarray, start_xyz, box_size: int) -> np.ndarray:
    """Read one (b, b, b) float32 box starting at 0-based (x, y, z) ``start_xyz``.

    Only the box's voxels are read. Parts outside the tomogram are filled with
    the mean of the inside part (the "pad" policy); a box entirely outside is
    an error.
    """
    b = int(box_size)
    s = np.asarray(start_xyz, dtype=np.int64).reshape(3)
    e = s + b
    shape_xyz = np.array(tomogram.shape[::-1])
    if np.all((s >= 0) & (e <= shape_xyz)):
        return np.array(tomogram[s[2] : e[2], s[1] : e[1], s[0] : e[0]], dtype=np.float32)
    lo = np.maximum(s, 0)
    hi = np.minimum(e, shape_xyz)
    if np.any(hi <= lo):
        raise ValueError(
            f"box at {s.tolist()} (x, y, z) lies outside the tomogram {shape_xyz.tolist()}"
        )
    part = np.asarray(tomogram[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]], dtype=np.float32)
    box = np.full((b, b, b), part.mean(dtype=np.float64), dtype=np.float32)
    o = lo - s
    box[o[2] : o[2] + part.shape[0], o[1] : o[1] + part.shape[1], o[0] : o[0] + part.shape[2]] = (
        part
    )
    return box


def iter_crop(tomogram: np.ndarray, plan: CropPlan) -> Iterator[np.ndarray]:
    """Yield the (b, b, b) float32 boxes of the kept particles, one at a time, in row order.

    Parameters
    ----------
    tomogram : np.ndarray
        (z, y, x) volume or read-only memmap (``read_mrc(path, mmap=True)``);
        only the voxels of the current box are read.
    plan : CropPlan
        From :func:`plan_crop` for this tomogram's shape.

    Yields
    ------
    np.ndarray
        Box ``k`` belongs to table row ``plan.kept_indices[k]``.
    """
    if tuple(tomogram.shape) != plan.tomogram_shape_zyx:
        raise ValueError(
            f"plan made for shape {plan.tomogram_shape_zyx}, tomogram has {tomogram.shape}"
        )
    for i in plan.kept_indices:
        yield crop_box(tomogram, plan.start_xyz[i], plan.box_size)


def crop_particles(
    tomogram: np.ndarray, positions_xyz_1based, box_size: int, edge_policy: str = "drop"
):
    """Cut cubic boxes centred on table positions, all into RAM.

    Only the voxels of each box are read, so ``tomogram`` may be a read-only
    memmap (``read_mrc(path, mmap=True)``) of a full-size tomogram. For long
    tables use :func:`plan_crop` and :func:`iter_crop` instead (bounded memory).

    Parameters
    ----------
    tomogram : np.ndarray
        (z, y, x) volume or memmap.
    positions_xyz_1based : array_like
        (n, 3) particle centres (x, y, z) in 1-based table pixel coordinates
        (Dynamo ``x + dx`` etc. when the shifts should be absorbed).
    box_size : int
        Side ``b`` of the cubic box in pixels.
    edge_policy : {"drop", "pad"}
        See :func:`plan_crop`.

    Returns
    -------
    particles : np.ndarray
        (n_kept, b, b, b) float32 boxes (z, y, x), in input order of the kept
        particles.
    kept_mask : np.ndarray
        (n,) bool, True for the particles returned.
    subpixel_remainder_xyz : np.ndarray
        (n_kept, 3) ``position - rounded position`` (x, y, z) in pixels, in
        [-0.5, 0.5); keep it as a shift when averaging.
    """
    if tomogram.ndim != 3:
        raise ValueError(f"tomogram must be (z, y, x), got shape {tomogram.shape}")
    plan = plan_crop(tomogram.shape, positions_xyz_1based, box_size, edge_policy)
    particles = np.empty(
        (plan.n_kept, plan.box_size, plan.box_size, plan.box_size), dtype=np.float32
    )
    for k, box in enumerate(iter_crop(tomogram, plan)):
        particles[k] = box
    return particles, plan.kept, plan.remainder_xyz[plan.kept_indices]


def check_box_fits(box_size: int, tomogram_shape_zyx, tomogram_source, key: str = "config: averaging.box_size_px") -> None:
    """Stop before cropping when a cubic box of ``box_size`` px cannot fit in the tomogram at all.

    Raises
    ------
    InputError
        Naming the configuration key, the tomogram file and both sizes.
    """
    shape = [int(v) for v in tomogram_shape_zyx]
    if int(box_size) > min(shape):
        raise InputError(key, f"a box of {int(box_size)} px does not fit in the tomogram {tomogram_source} of "
                         f"{shape[::-1]} px (x, y, z)")  # fmt: skip
