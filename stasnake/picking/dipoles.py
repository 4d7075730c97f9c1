"""Dipole annotations of spherical VLPs: one centre and one surface point per VLP.

Dynamo's "dipole" model marks a VLP with two clicks on a binned tomogram, one on
its centre and one on its surface (the membrane); the distance is the radius.
stasnake keeps the clicks in a plain CSV file, ``annotations/{ts}/dipoles.csv``
(written by the user; the autopilot writes proposals elsewhere, e.g.
``results/proposals/{ts}/dipoles.csv``, in the same format).

File format
-----------
Comma-separated, one header row, one VLP per row; lines starting with ``#`` are
comments. Required columns (any order, extra columns are kept and otherwise
ignored, e.g. a ``score`` of a proposal)::

    # VLPs of TS_01, clicked on the bin-2 tomogram
    center_x,center_y,center_z,surface_x,surface_y,surface_z,binning
    101.5,88,40,136,88,40,2
    ...

* ``center_*`` and ``surface_*``: (x, y, z) positions in pixels of the tomogram
  binned by ``binning``, **1-based** like Dynamo tables and MATLAB (the centre
  of array element ``[iz, iy, ix]`` is ``(ix + 1, iy + 1, iz + 1)``; a ChimeraX
  marker at ``origin + i * pixel_size`` is 1-based pixel ``i + 1``, see
  :func:`stasnake.io.cmm.markers_to_pixels`). Fractions are allowed.
* ``binning``: integer >= 1, the binning of the tomogram the VLP was clicked on
  (1 = full size). It may differ between rows.

Binned -> full size: a binned 0-based index ``i`` is the full-size 0-based
index ``i * binning`` (Fourier binning keeps the box centre ``n // 2``; the
same rule as RELION's ``(x - 1) * binning`` in :mod:`stasnake.geometry.relion`),
so ``full_1based = (binned_1based - 1) * binning + 1``.

The VLP number of a row (``vlp``, the Dynamo table ``reg`` of its crop points)
is its 1-based data-row number in the file, comments not counted.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.io.atomic import write_text_atomic

CENTER_COLUMNS = ("center_x", "center_y", "center_z")
SURFACE_COLUMNS = ("surface_x", "surface_y", "surface_z")
DIPOLE_COLUMNS = (*CENTER_COLUMNS, *SURFACE_COLUMNS, "binning")
#: Smallest accepted radius (full-size pixels): below it the surface point is taken as the centre.
MIN_RADIUS_PX = 1.0


def binned_to_full(xyz_1based, binning) -> np.ndarray:
    """Full-size 1-based pixel positions from 1-based positions in a binned tomogram.

    Parameters
    ----------
    xyz_1based : array_like
        (..., 3) positions (x, y, z) in binned pixels, 1-based.
    binning : int or array_like
        Binning factor(s), broadcast against ``xyz_1based[..., 0]``.

    Returns
    -------
    np.ndarray
        ``(xyz - 1) * binning + 1`` in full-size pixels.
    """
    b = np.asarray(binning, dtype=np.float64)[..., None]
    return (np.asarray(xyz_1based, dtype=np.float64) - 1.0) * b + 1.0


def full_to_binned(xyz_1based, binning) -> np.ndarray:
    """Inverse of :func:`binned_to_full`: ``(xyz - 1) / binning + 1``."""
    b = np.asarray(binning, dtype=np.float64)[..., None]
    return (np.asarray(xyz_1based, dtype=np.float64) - 1.0) / b + 1.0


def read_dipoles(path: str | os.PathLike, binning_expected: int | None = None) -> pd.DataFrame:
    """Read a dipole annotation file and convert it to full-size pixels.

    Parameters
    ----------
    path : str or PathLike
        CSV file in the format of this module's docstring.
    binning_expected : int, optional
        When given, every row's ``binning`` must equal it (the binning of the
        tomogram the workflow offers for annotation).

    Returns
    -------
    pd.DataFrame
        One row per VLP, in file order: ``vlp`` (1-based row number, int),
        ``center_x/y/z`` and ``surface_x/y/z`` in **full-size** 1-based pixels,
        ``radius_px`` (full-size pixels, centre to surface), ``binning`` (int, as
        written), then any extra columns of the file unchanged.

    Raises
    ------
    InputError
        Missing or empty file, a missing column, an empty or non-numeric value,
        a binning that is not a positive integer (or not the expected one), or
        a surface point on its centre; the message names the file and the VLP.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "dipole file does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        raw = pd.read_csv(io.StringIO(text), comment="#", dtype=str, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError(
            path, "dipole file is empty: expected a header row and one row per VLP"
        ) from None
    except pd.errors.ParserError as exc:
        raise InputError(path, f"not a readable CSV file ({exc})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in DIPOLE_COLUMNS if c not in raw.columns]
    if missing:
        raise InputError(
            path,
            f"missing column(s) {', '.join(missing)}; the header must name "
            f"{', '.join(DIPOLE_COLUMNS)}",
        )
    if len(raw) == 0:
        raise InputError(path, "no VLPs: the file has a header but no data rows")
    values = {}
    for col in DIPOLE_COLUMNS:
        strings = raw[col].fillna("").str.strip()
        numbers = pd.to_numeric(strings, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(numbers)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            shown = strings.iloc[i] or "an empty field"
            raise InputError(
                path, f"VLP {i + 1} (data row {i + 1}): {col} is {shown!r}, not a number"
            )
        values[col] = numbers
    binning = values["binning"]
    bad = (binning < 1) | (binning != np.round(binning))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(path, f"VLP {i + 1}: binning {binning[i]:g} is not an integer >= 1")
    binning = binning.astype(np.int64)
    if binning_expected is not None:
        bad = binning != int(binning_expected)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                path,
                f"VLP {i + 1}: binning {binning[i]} but the annotation tomogram is binned by "
                f"{int(binning_expected)}",
            )
    centre = binned_to_full(np.column_stack([values[c] for c in CENTER_COLUMNS]), binning)
    surface = binned_to_full(np.column_stack([values[c] for c in SURFACE_COLUMNS]), binning)
    radius = np.linalg.norm(surface - centre, axis=1)
    bad = radius < MIN_RADIUS_PX
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            path,
            f"VLP {i + 1}: the surface point is on the centre (radius {radius[i]:.2g} px): "
            "click the centre first, then a point on the membrane",
        )
    out = pd.DataFrame({"vlp": np.arange(1, len(raw) + 1, dtype=np.int64)})
    for k, c in enumerate(CENTER_COLUMNS):
        out[c] = centre[:, k]
    for k, c in enumerate(SURFACE_COLUMNS):
        out[c] = surface[:, k]
    out["radius_px"] = radius
    out["binning"] = binning
    for c in raw.columns:
        if c not in DIPOLE_COLUMNS and c not in out.columns:
            out[c] = raw[c].to_numpy()
    return out


def dipoles_from_spheres(centers_xyz, radii_px) -> pd.DataFrame:
    """Dipoles (full-size pixels) for spheres: the surface point at ``centre + (radius, 0, 0)``.

    The surface point lies in the centre's z slice, where a user checking the
    proposal in a slice viewer expects it.

    Parameters
    ----------
    centers_xyz : array_like
        (n, 3) sphere centres (x, y, z), full-size 1-based pixels.
    radii_px : array_like
        (n,) radii in full-size pixels.

    Returns
    -------
    pd.DataFrame
        Columns ``vlp`` (1..n), ``center_x/y/z``, ``surface_x/y/z``, ``radius_px``.
    """
    c = np.asarray(centers_xyz, dtype=np.float64).reshape(-1, 3)
    r = np.broadcast_to(np.asarray(radii_px, dtype=np.float64), (len(c),))
    s = c.copy()
    s[:, 0] += r
    out = pd.DataFrame({"vlp": np.arange(1, len(c) + 1, dtype=np.int64)})
    for k, a in enumerate("xyz"):
        out[f"center_{a}"] = c[:, k]
    for k, a in enumerate("xyz"):
        out[f"surface_{a}"] = s[:, k]
    out["radius_px"] = r
    return out


def write_dipoles(
    path: str | os.PathLike,
    dipoles_df: pd.DataFrame,
    binning: int = 1,
    comment: str | None = None,
) -> None:
    """Write dipoles in the annotation format (atomically), e.g. autopilot proposals.

    Parameters
    ----------
    path : str or PathLike
        Output CSV (proposals go to ``results/proposals/``, never ``annotations/``).
    dipoles_df : pd.DataFrame
        ``center_x/y/z`` and ``surface_x/y/z`` in **full-size** 1-based pixels
        (as :func:`read_dipoles` or :func:`dipoles_from_spheres` return them);
        other columns except ``vlp``, ``radius_px`` and ``binning`` (e.g.
        ``score``) are written after the required ones.
    binning : int
        Binning of the written coordinates (that of the tomogram the user will
        check them on); positions are converted with :func:`full_to_binned`.
    comment : str, optional
        Text written as ``#`` comment lines before the header.
    """
    missing = [c for c in (*CENTER_COLUMNS, *SURFACE_COLUMNS) if c not in dipoles_df.columns]
    if missing:
        raise KeyError(f"dipoles need column(s) {missing}")
    binning = int(binning)
    if binning < 1:
        raise ValueError(f"binning must be >= 1, not {binning}")
    out = pd.DataFrame(index=range(len(dipoles_df)))
    for cols in (CENTER_COLUMNS, SURFACE_COLUMNS):
        xyz = full_to_binned(dipoles_df[list(cols)].to_numpy(dtype=np.float64), binning)
        for k, c in enumerate(cols):
            out[c] = xyz[:, k]
    out["binning"] = binning
    for c in dipoles_df.columns:
        if c not in out.columns and c not in ("vlp", "radius_px"):
            out[c] = dipoles_df[c].to_numpy()
    header = "".join(f"# {line}\n" for line in (comment or "").splitlines())
    write_text_atomic(path, header + out.to_csv(index=False, float_format="%.6g"))
