"""Chimera / ChimeraX marker files (``.cmm``).

Syntax (Chimera "Volume Path Tracer" marker-file documentation, quoted in
public code that writes these files; ChimeraX reads and writes the same XML)::

    <marker_sets>                                  (optional root for several sets)
    <marker_set name="marker set 1">
    <marker id="1" x="-6.1267" y="17.44" z="-3.1338" radius="0.35217"/>
    <marker id="2" x="1.5395" y="16.277" z="-3.0339" r="0" g="1" b="1"
     radius="0.5" note="An example note"/>
    <link id1="2" id2="1" r="1" g="1" b="0" radius="0.17609"/>
    </marker_set>
    </marker_sets>

``x y z`` and ``radius`` are physical lengths (Å) in the scene coordinates of
the map the markers were placed on; ``r g b`` are 0..1 (default yellow
1, 1, 0 here), ``note`` optional; links are ignored by the reader. ChimeraX puts
the centre of voxel index i (0-based) at ``origin + i * pixel_size``, so the
1-based (Dynamo/MATLAB) pixel coordinate is ``(x - origin) / pixel_size + 1``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.io.atomic import write_text_atomic

CMM_COLUMNS = (
    "set_name",
    "id",
    "x_angstrom",
    "y_angstrom",
    "z_angstrom",
    "radius_angstrom",
    "r",
    "g",
    "b",
    "note",
)
DEFAULT_RGB = (1.0, 1.0, 0.0)
DEFAULT_RADIUS = 1.0


def _float_attr(marker: ET.Element, key: str, default, path: Path, mid: str, set_name: str):
    value = marker.get(key)
    if value is None:
        if default is None:
            raise InputError(
                path, f"marker set {set_name!r}, marker id {mid}: missing coordinate {key!r}"
            )
        return float(default)
    try:
        return float(value)
    except ValueError:
        raise InputError(
            path, f"marker set {set_name!r}, marker id {mid}: {key}={value!r} is not a number"
        ) from None


def read_cmm(path: str | os.PathLike) -> pd.DataFrame:
    """Read all markers of a ``.cmm`` file.

    Parameters
    ----------
    path : str or PathLike
        Marker file with one ``<marker_set>`` or several inside ``<marker_sets>``.

    Returns
    -------
    pd.DataFrame
        One row per marker in file order with columns :data:`CMM_COLUMNS`:
        set_name, id (int), x/y/z_angstrom (scene coordinates in Å),
        radius_angstrom, r, g, b (0..1), note ("" when absent).

    Raises
    ------
    InputError
        Missing file, malformed XML, no markers, a marker without id or with a
        missing/non-numeric coordinate (the message names file and marker id).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "marker file does not exist")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise InputError(path, f"malformed marker XML ({exc})") from None
    if root.tag == "marker_set":
        sets = [root]
    elif root.tag == "marker_sets":
        sets = root.findall("marker_set")
    else:
        raise InputError(path, f"root element <{root.tag}> is not <marker_set> or <marker_sets>")
    rows = []
    for mset in sets:
        set_name = mset.get("name", "")
        for marker in mset.findall("marker"):
            mid = marker.get("id")
            if mid is None:
                raise InputError(path, f"marker set {set_name!r}: a marker has no id")
            try:
                marker_id = int(mid)
            except ValueError:
                raise InputError(
                    path, f"marker set {set_name!r}: marker id {mid!r} is not an integer"
                ) from None
            row = {"set_name": set_name, "id": marker_id}
            for axis in "xyz":
                row[f"{axis}_angstrom"] = _float_attr(marker, axis, None, path, mid, set_name)
            row["radius_angstrom"] = _float_attr(
                marker, "radius", DEFAULT_RADIUS, path, mid, set_name
            )
            for channel, default in zip("rgb", DEFAULT_RGB, strict=True):
                row[channel] = _float_attr(marker, channel, default, path, mid, set_name)
            row["note"] = marker.get("note", "")
            rows.append(row)
    if not rows:
        raise InputError(path, "no markers in marker file")
    df = pd.DataFrame(rows, columns=list(CMM_COLUMNS))
    df["id"] = df["id"].astype(np.int64)
    return df


def _attr(value: float) -> str:
    return f"{float(value):.6g}"


def write_cmm(path: str | os.PathLike, markers_df: pd.DataFrame, set_name: str = "markers") -> None:
    """Write markers as a ChimeraX-readable ``.cmm`` file atomically.

    Parameters
    ----------
    path : str or PathLike
        Output file.
    markers_df : pd.DataFrame
        Columns x_angstrom, y_angstrom, z_angstrom (Å, scene coordinates) and
        optionally id (default 1..n), radius_angstrom, r, g, b, note, set_name.
        With a ``set_name`` column, one ``<marker_set>`` is written per value
        (in order of appearance) inside ``<marker_sets>``.
    set_name : str
        Name of the single marker set when there is no ``set_name`` column.
    """
    for c in ("x_angstrom", "y_angstrom", "z_angstrom"):
        if c not in markers_df.columns:
            raise KeyError(f"markers need column {c!r}")
    df = markers_df.reset_index(drop=True)
    n = len(df)
    ids = df["id"].to_numpy() if "id" in df.columns else np.arange(1, n + 1)
    names = (
        df["set_name"].astype(str).to_numpy()
        if "set_name" in df.columns
        else np.full(n, set_name, dtype=object)
    )
    radius = (
        df["radius_angstrom"].to_numpy(float)
        if "radius_angstrom" in df.columns
        else np.full(n, DEFAULT_RADIUS)
    )
    rgb = np.column_stack(
        [
            df[c].to_numpy(float) if c in df.columns else np.full(n, d)
            for c, d in zip("rgb", DEFAULT_RGB, strict=True)
        ]
    )
    notes = (
        df["note"].fillna("").astype(str).to_numpy()
        if "note" in df.columns
        else np.full(n, "", dtype=object)
    )
    xyz = df[["x_angstrom", "y_angstrom", "z_angstrom"]].to_numpy(float)
    root = ET.Element("marker_sets")
    set_elements: dict[str, ET.Element] = {}
    for i in range(n):
        name = str(names[i])
        if name not in set_elements:
            set_elements[name] = ET.SubElement(root, "marker_set", name=name)
        attrs = {
            "id": str(int(ids[i])),
            "x": _attr(xyz[i, 0]), "y": _attr(xyz[i, 1]), "z": _attr(xyz[i, 2]),
            "r": _attr(rgb[i, 0]), "g": _attr(rgb[i, 1]), "b": _attr(rgb[i, 2]),
            "radius": _attr(radius[i]),
        }  # fmt: skip
        if notes[i]:
            attrs["note"] = str(notes[i])
        ET.SubElement(set_elements[name], "marker", attrs)
    if not set_elements:
        ET.SubElement(root, "marker_set", name=set_name)
    ET.indent(root, space="")
    top = root if len(root) != 1 else root[0]
    write_text_atomic(path, ET.tostring(top, encoding="unicode") + "\n")


def markers_to_pixels(
    df: pd.DataFrame, pixel_size_angstrom: float, origin_angstrom=(0.0, 0.0, 0.0)
) -> np.ndarray:
    """Marker positions as 1-based (x, y, z) voxel coordinates, shape (n, 3).

    ``(position_angstrom - origin_angstrom) / pixel_size_angstrom + 1``: the
    voxel with 0-based index i sits at ``origin + i * pixel_size`` in
    ChimeraX, and table coordinates are 1-based (see dynamo_table).
    """
    if pixel_size_angstrom <= 0:
        raise ValueError(f"pixel_size_angstrom must be positive, got {pixel_size_angstrom}")
    xyz = df[["x_angstrom", "y_angstrom", "z_angstrom"]].to_numpy(np.float64)
    return (xyz - np.asarray(origin_angstrom, np.float64)) / float(pixel_size_angstrom) + 1.0


def pixels_to_markers(
    xyz_pixels,
    pixel_size_angstrom: float,
    origin_angstrom=(0.0, 0.0, 0.0),
    radius_angstrom: float = DEFAULT_RADIUS,
) -> pd.DataFrame:
    """Inverse of :func:`markers_to_pixels`: 1-based (n, 3) (x, y, z) pixels to a marker DataFrame.

    Returns a DataFrame with id 1..n, x/y/z_angstrom, radius_angstrom and the
    default colour, ready for :func:`write_cmm`.
    """
    xyz = np.atleast_2d(np.asarray(xyz_pixels, np.float64))
    if xyz.shape[1] != 3:
        raise ValueError(f"xyz_pixels must have shape (n, 3), got {xyz.shape}")
    ang = (xyz - 1.0) * float(pixel_size_angstrom) + np.asarray(origin_angstrom, np.float64)
    n = len(ang)
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1, dtype=np.int64),
            "x_angstrom": ang[:, 0], "y_angstrom": ang[:, 1], "z_angstrom": ang[:, 2],
            "radius_angstrom": np.full(n, float(radius_angstrom)),
            "r": DEFAULT_RGB[0], "g": DEFAULT_RGB[1], "b": DEFAULT_RGB[2],
        }
    )  # fmt: skip
