"""Dynamo-style table operations: azimuth randomisation, rigid moves, recentring, subboxing, duplicates.

Every function takes a Dynamo table (``stasnake.io.dynamo_table``) and returns
a new one (the input is never modified).

Conventions (docs/conventions.md, docs/particles.md):

* A particle with pose ``R`` (active, reference -> tomogram, on (x, y, z)
  column vectors; ``R = dynamo_euler_to_matrix(tdrot, tilt, narot)``) and
  shift ``s = (dx, dy, dz)`` (pixels) satisfies
  ``particle(R p + c + s) = reference(p + c)``, ``c`` the box centre. In the
  tomogram, the reference point ``p`` (relative to the reference's centre)
  lies at ``X = (x, y, z) + s + R p`` (1-based tomogram pixels).
* Points marked in an average (the reference frame) are 1-based pixel
  coordinates of the average's box (x, y, z), like table positions: the
  centre voxel (index ``b // 2``) is at ``b // 2 + 1``. A ChimeraX ``.cmm``
  marker placed on an average written by stasnake (origin 0) converts with
  ``stasnake.io.cmm.markers_to_pixels(markers, pixel_size)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from stasnake.errors import InputError
from stasnake.geometry.euler import matrix_to_dynamo_euler
from stasnake.io.dynamo_table import particle_positions
from stasnake.sta.poses import table_poses
from stasnake.sta.rotate import rotation_about_z
from stasnake.sta.tables import split_even_odd as _half_masks

_POSITION_COLUMNS = ("x", "y", "z", "dx", "dy", "dz")
_ANGLE_COLUMNS = ("tdrot", "tilt", "narot")


# ---------------------------------------------------------------------- checks and helpers
def _require(table: pd.DataFrame, columns, source: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(source, f"table lacks column(s) {', '.join(missing)}")


def _check_finite(table: pd.DataFrame, columns, source: str) -> None:
    _require(table, columns, source)
    values = table[list(columns)].to_numpy(np.float64)
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        tag = table["tag"].iloc[i] if "tag" in table.columns else "?"
        raise InputError(source, f"row {i + 1} (tag {tag}): non-finite value in {', '.join(columns)} "
                                 f"({int(bad.sum())} such row(s))")  # fmt: skip


def _poses(table: pd.DataFrame, source: str) -> tuple[np.ndarray, np.ndarray]:
    _check_finite(table, _POSITION_COLUMNS + _ANGLE_COLUMNS, source)
    return table_poses(table)


def _with_poses(table: pd.DataFrame, matrices: np.ndarray) -> pd.DataFrame:
    out = table.copy()
    out[list(_ANGLE_COLUMNS)] = matrix_to_dynamo_euler(
        np.asarray(matrices).reshape(-1, 3, 3)
    ).reshape(-1, 3)
    return out


def _rotation(matrix, source: str) -> np.ndarray:
    r = np.asarray(matrix, dtype=np.float64)
    if r.shape != (3, 3) or not np.all(np.isfinite(r)):
        raise InputError(source, f"rotation must be a finite 3 x 3 matrix, got shape {r.shape}")
    if not np.allclose(r @ r.T, np.eye(3), atol=1e-6) or np.linalg.det(r) < 0:
        raise InputError(source, "rotation is not a proper rotation matrix (R R^T != I or det < 0)")
    return r


def average_centre_1based(box_size: int) -> np.ndarray:
    """1-based (x, y, z) pixel coordinate of the centre of a cubic average of side ``box_size``: ``b // 2 + 1``."""
    return np.full(3, int(box_size) // 2 + 1, dtype=np.float64)


def _marker_offsets(markers_xyz, box_size: int, source: str) -> np.ndarray:
    """Offsets ``m - c`` (pixels, (k, 3)) of 1-based average markers from the average's centre."""
    b = int(box_size)
    if b < 1:
        raise InputError(source, f"box size must be positive, not {box_size}")
    m = np.asarray(markers_xyz, dtype=np.float64)
    if m.ndim == 1:
        m = m[None]
    if m.ndim != 2 or m.shape[1] != 3:
        raise InputError(source, f"markers must be (x, y, z) triples, got shape {m.shape}")
    outside = ~np.all(np.isfinite(m) & (m >= 0.5) & (m <= b + 0.5), axis=1)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise InputError(source, f"marker {k + 1} at {m[k].tolist()} (x, y, z, 1-based px) lies outside "
                                 f"the {b}^3 average (0.5 .. {b + 0.5})")  # fmt: skip
    return m - average_centre_1based(b)


# ---------------------------------------------------------------------- operations
def randomize_azimuth(
    table: pd.DataFrame, rng: np.random.Generator, source: str = "table"
) -> pd.DataFrame:
    """Rotate every particle about its own z axis by a random angle (Dynamo ``dynamo_table_randomize_azimuth``).

    ``R_new = R @ Rz(phi)``, ``phi`` uniform in [0, 360) degrees: the particle's
    z axis (``R[:, 2]``, set by tdrot and tilt: e.g. a lattice normal) is kept
    and the in-plane angle narot is randomised. Used to remove a preferred
    in-plane orientation (e.g. from an oversampled surface model) before alignment.

    Parameters
    ----------
    table : pd.DataFrame
        Dynamo table.
    rng : np.random.Generator
        Source of the angles.
    source : str
        Table name for error messages.

    Returns
    -------
    pd.DataFrame
        Copy with new tdrot, tilt, narot (tdrot/tilt may change at tilt 0 or
        180, where only the matrix is defined).
    """
    matrices, _ = _poses(table, source)
    phi = rng.uniform(0.0, 360.0, len(table))
    rz = np.stack([rotation_about_z(a) for a in phi]) if len(phi) else np.zeros((0, 3, 3))
    return _with_poses(table, matrices @ rz)


def rigid_transform(
    table: pd.DataFrame, rotation, shift_xyz, source: str = "table"
) -> pd.DataFrame:
    """Move every particle by a rigid transform given in the reference (average) frame (Dynamo ``dynamo_table_rigid``).

    If the average was aligned to a new reference by ``(R_a, s_a)``, i.e.
    ``average(R_a p + c + s_a) = new_ref(p + c)``, then each particle with
    ``particle(R_i q + c + s_i) = average(q + c)`` satisfies, with
    ``q = R_a p + s_a``,
    ``particle(R_i R_a p + c + s_i + R_i s_a) = new_ref(p + c)``:

    * new pose ``R_i @ R_a``,
    * new shift ``s_i + R_i @ s_a`` (positions x, y, z unchanged).

    Averaging the particles with the new table gives ``new_ref``.

    Parameters
    ----------
    table : pd.DataFrame
        Dynamo table.
    rotation : array_like
        (3, 3) active rotation ``R_a`` on (x, y, z) vectors.
    shift_xyz : array_like
        (3,) ``s_a`` in pixels (x, y, z), reference frame.
    source : str
        Table name for error messages.

    Returns
    -------
    pd.DataFrame
        Copy with new angles and dx, dy, dz.
    """
    r_a = _rotation(rotation, "rotation")
    s_a = np.asarray(shift_xyz, dtype=np.float64).reshape(3)
    if not np.all(np.isfinite(s_a)):
        raise InputError("shift_xyz", f"shift {s_a.tolist()} is not finite")
    matrices, shifts = _poses(table, source)
    out = table.copy() if np.array_equal(r_a, np.eye(3)) else _with_poses(table, matrices @ r_a)
    out[["dx", "dy", "dz"]] = shifts + matrices @ s_a
    return out


def recentre(
    table: pd.DataFrame, marker_xyz_in_average, box_size: int, source: str = "table"
) -> pd.DataFrame:
    """Make a point marked in the average each particle's new centre (Dynamo ``dynamo_table_recenter``).

    ``new shift = s_i + R_i (m - c)``, orientation unchanged: the rigid
    transform ``(I, m - c)`` of :func:`rigid_transform`. Re-crop at
    ``x + dx`` to centre the boxes on the marked unit.

    Parameters
    ----------
    table : pd.DataFrame
        The table the average was made with.
    marker_xyz_in_average : array_like
        (3,) marker (x, y, z), 1-based pixel coordinates of the average box
        (centre at ``b // 2 + 1``; see the module docstring for .cmm markers).
    box_size : int
        Side ``b`` of the average in pixels.
    source : str
        Table name for error messages.

    Returns
    -------
    pd.DataFrame
        Copy with new dx, dy, dz.
    """
    offset = _marker_offsets(marker_xyz_in_average, box_size, "marker")
    if len(offset) != 1:
        raise InputError("marker", f"recentring takes one marker, got {len(offset)}")
    return rigid_transform(table, np.eye(3), offset[0], source=source)


def subbox(
    table: pd.DataFrame,
    markers_xyz_in_average,
    box_size: int,
    orientations=None,
    marker_column: str | None = None,
    source: str = "table",
) -> pd.DataFrame:
    """One new particle per (particle, marker): points marked in the average mapped back into the tomograms.

    For particle ``i`` (position ``x_i``, shift ``s_i``, pose ``R_i``) and
    marker ``k`` (``m_k``, optional orientation ``R_k``, the subbox frame
    relative to the average frame: ``subref(p + c) = average(R_k p + m_k)``):

    * position ``x_i + s_i + R_i (m_k - c)`` in x, y, z (floating point) with
      dx = dy = dz = 0; cropping later rounds it and keeps the remainder in dx;
    * pose ``R_i @ R_k`` (``R_i`` without orientations).

    Rows are ordered particle-major (all markers of the first particle, then
    the next particle). Tags are renumbered 1..n*k; the parent's tag goes to
    ``otag`` (Dynamo column 31, "original tag"); every other column (tomo,
    reg, class, cc, wedge, apix...) is copied from the parent.

    Parameters
    ----------
    table : pd.DataFrame
        The table the average was made with.
    markers_xyz_in_average : array_like
        (k, 3) markers (x, y, z), 1-based pixels of the average box.
    box_size : int
        Side ``b`` of the average in pixels.
    orientations : array_like, optional
        (k, 3, 3) active rotations ``R_k`` of the subboxes relative to the
        average frame (e.g. to put a lattice unit's own axis along z).
    marker_column : str, optional
        Table column that receives the marker number 1..k (e.g. ``"sref"``).
    source : str
        Table name for error messages.

    Returns
    -------
    pd.DataFrame
        The subboxed table, ``len(table) * k`` rows.
    """
    offsets = _marker_offsets(markers_xyz_in_average, box_size, "markers")
    k = len(offsets)
    if orientations is None:
        rk = np.broadcast_to(np.eye(3), (k, 3, 3))
    else:
        rk = np.asarray(orientations, dtype=np.float64).reshape(-1, 3, 3)
        if len(rk) != k:
            raise InputError("orientations", f"{len(rk)} orientations for {k} markers")
        rk = np.stack([_rotation(r, f"orientation {j + 1}") for j, r in enumerate(rk)])
    matrices, _ = _poses(table, source)
    centres = particle_positions(table)
    n = len(table)
    out = table.iloc[np.repeat(np.arange(n), k)].reset_index(drop=True)
    new_xyz = centres[:, None, :] + np.einsum("nij,kj->nki", matrices, offsets)
    new_r = np.einsum("nij,kjl->nkil", matrices, rk)
    out = _with_poses(out, new_r.reshape(-1, 3, 3))
    out[["x", "y", "z"]] = new_xyz.reshape(-1, 3)
    out[["dx", "dy", "dz"]] = 0.0
    out["otag"] = np.repeat(table["tag"].to_numpy(), k)
    out["tag"] = np.arange(1, n * k + 1)
    if marker_column is not None:
        _require(out, [marker_column], source)
        out[marker_column] = np.tile(np.arange(1, k + 1), n).astype(out[marker_column].dtype)
    return out


def exclude_duplicates(
    table: pd.DataFrame,
    radius_px: float,
    by: str = "cc",
    return_mask: bool = False,
    source: str = "table",
):
    """Remove particles closer than ``radius_px`` to a better one in the same tomogram.

    Dynamo's separation-in-tomogram / ``dpktbl.exclusionPerVolume``: per
    tomogram (column ``tomo``), particles are visited by descending score
    (``by``; ties in row order); each visited particle that was not removed
    is kept and removes every particle whose centre (``x + dx`` etc.) is closer
    than ``radius_px`` (strictly). The kept set therefore has all pairwise
    distances >= ``radius_px`` and always contains the best particle of a
    cluster.

    Parameters
    ----------
    table : pd.DataFrame
        Dynamo table.
    radius_px : float
        Exclusion distance in pixels (> 0).
    by : str
        Score column; higher is better (Dynamo: cc).
    return_mask : bool
        Also return the (n,) bool mask of kept rows.
    source : str
        Table name for error messages.

    Returns
    -------
    pd.DataFrame or (pd.DataFrame, np.ndarray)
        The kept rows in their original order (index reset), and the mask.
    """
    radius = float(radius_px)
    if not np.isfinite(radius) or radius <= 0:
        raise InputError(
            "radius_px", f"exclusion radius must be a positive number of pixels, not {radius_px}"
        )
    _check_finite(table, _POSITION_COLUMNS + (by,), source)
    _require(table, ["tomo"], source)
    centres = particle_positions(table)
    score = table[by].to_numpy(np.float64)
    keep = np.zeros(len(table), dtype=bool)
    r_strict = np.nextafter(radius, 0.0)
    for tomo in np.unique(table["tomo"].to_numpy()):
        rows = np.flatnonzero(table["tomo"].to_numpy() == tomo)
        neighbours = cKDTree(centres[rows]).query_ball_point(centres[rows], r_strict)
        removed = np.zeros(len(rows), dtype=bool)
        for j in np.argsort(-score[rows], kind="stable"):
            if removed[j]:
                continue
            keep[rows[j]] = True
            removed[neighbours[j]] = True
    out = table[keep].reset_index(drop=True)
    return (out, keep) if return_mask else out


def merge_tables(
    tables: Sequence[pd.DataFrame],
    renumber_tags: bool = True,
    return_mapping: bool = False,
    sources: Sequence[str] | None = None,
):
    """Concatenate tables with unique tags, keeping each particle's even/odd half.

    If the tags of all tables are already unique together they are kept.
    Otherwise (and ``renumber_tags``) table ``j`` gets ``offset_j`` added to
    its tags: ``offset_0 = 0`` and ``offset_j`` the smallest **even** number
    that puts all of table j's tags above every new tag so far. Tags become
    unique and their parity, hence the gold-standard half
    (:func:`stasnake.sta.tables.half_set`), is unchanged.

    Parameters
    ----------
    tables : sequence of pd.DataFrame
        Dynamo tables (same columns).
    renumber_tags : bool
        Allow renumbering; with False, duplicate tags are an error.
    return_mapping : bool
        Also return the mapping DataFrame (columns ``table`` (0-based index in
        ``tables``), ``old_tag``, ``new_tag``; one row per particle).
    sources : sequence of str, optional
        Table names for error messages.

    Returns
    -------
    pd.DataFrame or (pd.DataFrame, pd.DataFrame)
        The merged table (index reset), and the mapping.
    """
    tables = list(tables)
    names = list(sources) if sources is not None else [f"table {j + 1}" for j in range(len(tables))]
    if not tables:
        raise InputError("tables", "no tables to merge")
    for t, name in zip(tables, names, strict=True):
        _require(t, ["tag"], name)
    old = [t["tag"].to_numpy(np.int64) for t in tables]
    all_old = np.concatenate(old)
    offsets = np.zeros(len(tables), dtype=np.int64)
    if len(np.unique(all_old)) != len(all_old):
        if not renumber_tags:
            dup = pd.Series(all_old).value_counts()
            raise InputError(", ".join(names), f"duplicate tags {dup[dup > 1].index[:5].tolist()}")
        top = None  # largest new tag so far
        for j, tags in enumerate(old):
            if not len(tags):
                continue
            if top is not None:  # smallest even offset that puts every tag above ``top``
                need = top - int(tags.min()) + 1
                offsets[j] = need + need % 2
            top = (
                int(offsets[j] + tags.max())
                if top is None
                else max(top, int(offsets[j] + tags.max()))
            )
    merged = pd.concat(tables, ignore_index=True)
    new = np.concatenate([tags + off for tags, off in zip(old, offsets, strict=True)])
    merged["tag"] = new
    if not return_mapping:
        return merged
    mapping = pd.DataFrame({"table": np.repeat(np.arange(len(tables)), [len(t) for t in old]),
                            "old_tag": all_old, "new_tag": new})  # fmt: skip
    return merged, mapping


def split_even_odd(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two gold-standard halves as tables: half 1 = even tags, half 2 = odd tags.

    The rule is :func:`stasnake.sta.tables.half_set` (RELION ``rlnRandomSubset = tag % 2 + 1``).

    Returns
    -------
    (pd.DataFrame, pd.DataFrame)
        Copies of the rows of each half, original order, index reset.
    """
    half1, half2 = _half_masks(table)
    return table[half1].reset_index(drop=True), table[half2].reset_index(drop=True)
