"""Crop subtomograms at table positions from a (possibly memory-mapped) tomogram.

Positions are Dynamo table coordinates: (x, y, z) in pixels, 1-based (the
centre of array element ``[iz, iy, ix]`` is ``(ix + 1, iy + 1, iz + 1)``).
A box of side ``b`` has its centre voxel at index ``b // 2``; that voxel is
placed at the rounded position. Rounding is half-up (``floor(p + 0.5)``) so
it is deterministic for exact halves.
"""

from __future__ import annotations

import numpy as np

_EDGE_POLICIES = ("drop", "pad")


def crop_particles(tomogram: np.ndarray, positions_xyz_1based, box_size: int,
                   edge_policy: str = "drop"):
    """Cut cubic boxes centred on table positions.

    Only the voxels of each box are read, so ``tomogram`` may be a read-only
    memmap (``read_mrc(path, mmap=True)``) of a full-size tomogram.

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
        "drop": particles whose box leaves the tomogram are excluded.
        "pad": the outside part of the box is filled with the mean of the
        inside part; particles whose box lies entirely outside are still
        excluded.

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
    if edge_policy not in _EDGE_POLICIES:
        raise ValueError(f"edge_policy must be one of {_EDGE_POLICIES}, not {edge_policy!r}")
    if tomogram.ndim != 3:
        raise ValueError(f"tomogram must be (z, y, x), got shape {tomogram.shape}")
    b = int(box_size)
    if b < 1:
        raise ValueError(f"box_size must be positive, not {box_size}")
    pos = np.asarray(positions_xyz_1based, dtype=np.float64).reshape(-1, 3)
    idx0 = pos - 1.0
    rounded = np.floor(idx0 + 0.5)
    remainder = idx0 - rounded
    start_xyz = rounded.astype(np.int64) - b // 2
    end_xyz = start_xyz + b
    shape_xyz = np.array(tomogram.shape[::-1])
    inside = np.all((start_xyz >= 0) & (end_xyz <= shape_xyz), axis=1)
    overlaps = np.all((end_xyz > 0) & (start_xyz < shape_xyz), axis=1)
    kept = inside if edge_policy == "drop" else overlaps
    kept_idx = np.flatnonzero(kept)
    particles = np.empty((kept_idx.size, b, b, b), dtype=np.float32)
    for out_i, i in enumerate(kept_idx):
        s = start_xyz[i]
        e = end_xyz[i]
        if inside[i]:
            particles[out_i] = tomogram[s[2]:e[2], s[1]:e[1], s[0]:e[0]]
            continue
        lo = np.maximum(s, 0)
        hi = np.minimum(e, shape_xyz)
        part = np.asarray(tomogram[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]], dtype=np.float32)
        box = particles[out_i]
        box[...] = part.mean(dtype=np.float64)
        o = lo - s
        box[o[2]:o[2] + part.shape[0], o[1]:o[1] + part.shape[1], o[0]:o[0] + part.shape[2]] = part
    return particles, kept, remainder[kept_idx]
