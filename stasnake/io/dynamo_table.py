"""Dynamo tables (``.tbl``): one particle per row, whitespace-separated numbers.

Column convention (1-based, Dynamo wiki "Table convention"; names as in the
``dynamotable`` package so DataFrames interoperate):

==  ==============  ===========================================================
 1  tag             particle identifier (unique in a table)
 2  aligned_value   1 if the particle takes part in alignment
 3  averaged_value  1 if the particle takes part in averaging
 4  dx dy dz (4-6)  shift in pixels, tomogram frame: the particle centre is at
                    (x + dx, y + dy, z + dz)
 7  tdrot           Euler angles in degrees, Dynamo ZXZ (tdrot, tilt, narot);
 8  tilt            see ``stasnake.geometry.euler`` for the matrix convention
 9  narot
10  cc              cross-correlation of the last alignment
11  cc2             second score
12  cpu             processor that aligned the particle
13  ftype           Fourier sampling type: 1 = single-axis tilt (wedge)
14  ymintilt        minimum tilt angle about y (degrees)
15  ymaxtilt        maximum tilt angle about y (degrees)
16  xmintilt        minimum tilt angle about x (ftype 2)
17  xmaxtilt        maximum tilt angle about x
18  fs1 fs2         free Fourier-sampling parameters
20  tomo            tomogram number (joins the ``.doc``/``.vll`` index)
21  reg             region / object (e.g. the VLP) within the tomogram
22  class           class number
23  annotation      free annotation
24  x y z (24-26)   particle position in pixels of the full-size tomogram,
                    1-based like MATLAB: the centre of array element
                    [0, 0, 0] is (1, 1, 1)
27  dshift daxis    last change in shift / axis / narot / cc
    dnarot dcc
31  otag            original tag (before subboxing)
32  npar            number of added particles (for averages)
34  ref sref        reference and subreference numbers (multireference)
36  apix            pixel size in Å
37  def             defocus in µm
41  eig1 eig2       free
==  ==============  ===========================================================
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.io.atomic import atomic_output

COLUMNS: tuple[str, ...] = (
    "tag", "aligned_value", "averaged_value", "dx", "dy", "dz", "tdrot", "tilt", "narot",
    "cc", "cc2", "cpu", "ftype", "ymintilt", "ymaxtilt", "xmintilt", "xmaxtilt", "fs1", "fs2",
    "tomo", "reg", "class", "annotation", "x", "y", "z", "dshift", "daxis", "dnarot", "dcc",
    "otag", "npar", "undefined1", "ref", "sref", "apix", "def", "undefined2", "undefined3",
    "undefined4", "eig1", "eig2",
)  # fmt: skip
INTEGER_COLUMNS = frozenset(
    {"tag", "aligned_value", "averaged_value", "cpu", "ftype", "tomo", "reg", "class",
     "annotation", "otag", "npar", "ref", "sref"}
)  # fmt: skip
MIN_COLUMNS = 26  # up to x, y, z: the least a table needs to place particles

_COMPLEX = re.compile(r"^([-+]?[0-9.eE+-]+?)([-+][0-9.eE+-]*)i$")


def column_names(n_columns: int) -> list[str]:
    """Names for a table with ``n_columns`` columns (extra ones are ``col43``...)."""
    return list(COLUMNS[:n_columns]) + [f"col{i + 1}" for i in range(len(COLUMNS), n_columns)]


def new_table(n: int, **columns) -> pd.DataFrame:
    """Make a table of ``n`` particles with Dynamo's defaults.

    Parameters
    ----------
    n : int
        Number of rows.
    **columns
        Column values (scalars or length-``n`` arrays), by column name.

    Returns
    -------
    pd.DataFrame
        42 columns; tags 1..n, aligned and averaged 1, ftype 1 with a
        -60..60 degree wedge unless given, everything else 0.
    """
    unknown = set(columns) - set(COLUMNS)
    if unknown:
        raise KeyError(f"unknown Dynamo table columns: {sorted(unknown)}")
    df = pd.DataFrame({c: np.zeros(n, dtype=np.int64 if c in INTEGER_COLUMNS else np.float64) for c in COLUMNS})
    df["tag"] = np.arange(1, n + 1)
    df["aligned_value"] = 1
    df["averaged_value"] = 1
    df["ftype"] = 1
    df["ymintilt"] = -60.0
    df["ymaxtilt"] = 60.0
    for name, value in columns.items():
        df[name] = np.asarray(value).astype(df[name].dtype) if np.ndim(value) else value
    return df


def _parse_number(token: str, path: Path, row: int, col: int) -> float:
    try:
        return float(token)
    except ValueError:
        m = _COMPLEX.match(token)
        if m:  # MATLAB complex literal such as 0+1.2e-06i: Dynamo writes these in daxis
            return float(m.group(1))
        raise InputError(path, f"row {row}, column {col}: {token!r} is not a number") from None


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a Dynamo table.

    Parameters
    ----------
    path : str or PathLike
        ``.tbl`` file (ASCII, whitespace separated).

    Returns
    -------
    pd.DataFrame
        One row per particle, columns named as in :data:`COLUMNS`.

    Raises
    ------
    InputError
        Missing file, rows of different length, fewer than 26 columns, or a
        field that is not a number; the message names the file and the row.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    rows = []
    n_cols = None
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            tokens = line.split()
            if not tokens:
                continue
            if n_cols is None:
                n_cols = len(tokens)
                if n_cols < MIN_COLUMNS:
                    raise InputError(path, f"row {lineno} has {n_cols} columns; a Dynamo table needs at least {MIN_COLUMNS} (up to x, y, z)")
            elif len(tokens) != n_cols:
                raise InputError(path, f"row {lineno} has {len(tokens)} columns, the rows before it have {n_cols}")
            try:
                rows.append([float(t) for t in tokens])
            except ValueError:
                rows.append([_parse_number(t, path, lineno, i + 1) for i, t in enumerate(tokens)])
    if n_cols is None:
        return new_table(0)
    data = np.asarray(rows, dtype=np.float64)
    df = pd.DataFrame(data, columns=column_names(n_cols))
    for c in df.columns:
        if c in INTEGER_COLUMNS:
            df[c] = np.rint(df[c]).astype(np.int64)
    return df


def _format(value_column: np.ndarray, integer: bool) -> list[str]:
    if integer:
        return [str(int(v)) for v in np.rint(value_column)]
    return [f"{v:.8g}" for v in value_column]


def write_table(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Write a Dynamo table atomically (42 columns, missing ones filled with defaults).

    Parameters
    ----------
    path : str or PathLike
        Output ``.tbl`` file.
    table : pd.DataFrame
        Columns named as in :data:`COLUMNS`; unknown columns other than
        ``colNN`` (extra Dynamo columns) are an error, non-numeric ones too.
    """
    extra = [c for c in table.columns if c not in COLUMNS and not re.fullmatch(r"col\d+", str(c))]
    if extra:
        raise KeyError(f"columns that are not Dynamo table columns: {extra}")
    full = new_table(len(table))
    for c in table.columns:
        full[c] = table[c].to_numpy()
    columns = list(COLUMNS) + [c for c in table.columns if c not in COLUMNS]
    formatted = [_format(np.asarray(full[c], dtype=np.float64), c in INTEGER_COLUMNS) for c in columns]
    lines = [" ".join(fields) + "\n" for fields in zip(*formatted, strict=True)] if len(full) else []
    with atomic_output(path) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8")


def particle_positions(table: pd.DataFrame, apply_shifts: bool = True) -> np.ndarray:
    """Particle centres (x, y, z) in 1-based tomogram pixels, shape (n, 3).

    With ``apply_shifts`` the table shifts are added: x + dx, y + dy, z + dz.
    """
    xyz = table[["x", "y", "z"]].to_numpy(dtype=np.float64)
    if apply_shifts:
        xyz = xyz + table[["dx", "dy", "dz"]].to_numpy(dtype=np.float64)
    return xyz
