"""The sample list ``config/tomograms.tsv``: one row per tilt series.

Columns (tab separated, header required):

=========================  ========  ==================================================
column                     required  meaning
=========================  ========  ==================================================
name                       yes       tilt-series name, used in every output path
tilt_series                yes [*]   MRC stack of the tilt images (any order)
mdoc                       yes       SerialEM .mdoc of that stack (or of the movies)
movies                     [*]       folder of the tilt movies (MRC or TIFF) named in
                                     the mdoc's SubFramePath; they are motion
                                     corrected into the stack
gain_reference             no        MRC gain reference of the movies (multiplied;
                                     orientation: config motion.gain_flip/rotate)
tomo_number                no        Dynamo table ``tomo`` number (default: the
                                     trailing digits of ``name``)
exclude_views              no        tilt angles (degrees) to drop, comma separated
pixel_size_angstrom        no        override of the mdoc PixelSpacing (Å)
tilt_axis_angle_deg        no        override of the mdoc tilt-axis angle (degrees)
dose_per_tilt_e_per_A2     no        override of the mdoc ExposureDose (e/Å²)
thickness_px               no        tomogram thickness in pixels (default: config)
alignment_xf               no        an existing IMOD .xf for the sorted full stack;
                                     when given it replaces alignment estimation
defocus_file               no        an existing IMOD .defocus (ctfplotter, or CTFFIND
                                     converted) for the sorted full stack; when given
                                     it replaces CTF estimation
=========================  ========  ==================================================

[*] each row gives exactly one of ``tilt_series`` and ``movies``.

Relative paths are relative to the folder Snakemake runs in (the repository root).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from stasnake.errors import InputError

REQUIRED_COLUMNS = ("name", "mdoc")
OPTIONAL_COLUMNS = {
    "tilt_series": "str",
    "movies": "str",
    "gain_reference": "str",
    "tomo_number": "int",
    "exclude_views": "str",
    "pixel_size_angstrom": "float",
    "tilt_axis_angle_deg": "float",
    "dose_per_tilt_e_per_A2": "float",
    "thickness_px": "int",
    "alignment_xf": "str",
    "defocus_file": "str",
}
PATH_COLUMNS = ("tilt_series", "mdoc", "movies", "gain_reference", "alignment_xf", "defocus_file")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _row_error(path, row: int, name: str, problem: str) -> InputError:
    who = f"row {row}" + (f" ({name})" if name else "")
    return InputError(path, f"{who}: {problem}")


def _parse_optional(value: str, kind: str):
    if kind == "int":
        f = float(value)
        if not f.is_integer():
            raise ValueError(f"{value!r} is not a whole number")
        return int(f)
    if kind == "float":
        return float(value)
    return value


def parse_exclude_views(text: str) -> list[float]:
    """Tilt angles (degrees) from a comma/space separated list; empty gives []."""
    if text is None or str(text).strip() == "":
        return []
    return [float(tok) for tok in re.split(r"[,\s;]+", str(text).strip()) if tok]


def _default_tomo_number(name: str) -> int | None:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else None


def load_samples(path: str | os.PathLike, check_files: bool = True) -> pd.DataFrame:
    """Read and check the sample list.

    Parameters
    ----------
    path : str or PathLike
        Tab-separated sample list.
    check_files : bool
        Check that every referenced file exists.

    Returns
    -------
    pd.DataFrame
        Indexed by ``name``; optional columns present for every row (None
        where not given); ``tomo_number`` filled in.

    Raises
    ------
    InputError
        Names the file, the row (1-based data row, with the tilt-series name)
        and the column for: a missing file or column, an unknown column, a
        duplicate name or tomo number, a value of the wrong type.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "sample list does not exist")
    try:
        raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, comment="#")
    except Exception as exc:  # pandas raises several types for malformed text
        raise InputError(path, f"cannot be read as a tab-separated table ({exc})") from None
    raw.columns = [c.strip() for c in raw.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise InputError(path, f"missing required column(s) {missing}; the header has {list(raw.columns)}")
    unknown = [c for c in raw.columns if c not in REQUIRED_COLUMNS and c not in OPTIONAL_COLUMNS]
    if unknown:
        raise InputError(path, f"unknown column(s) {unknown}; allowed: {list(REQUIRED_COLUMNS) + list(OPTIONAL_COLUMNS)}")
    if raw.empty:
        raise InputError(path, "no tilt series listed")

    records = []
    for i, rec in enumerate(raw.to_dict("records"), start=1):
        name = rec["name"].strip()
        if not NAME_PATTERN.match(name):
            raise _row_error(path, i, name, f"name {name!r} must match {NAME_PATTERN.pattern} (letters, digits, _ . -)")
        out = {"name": name}
        for col in REQUIRED_COLUMNS[1:]:
            value = rec[col].strip()
            if not value:
                raise _row_error(path, i, name, f"column {col!r} is empty")
            out[col] = value
        for col, kind in OPTIONAL_COLUMNS.items():
            value = str(rec.get(col, "")).strip()
            if value == "":
                out[col] = None
                continue
            try:
                out[col] = _parse_optional(value, kind)
                if col == "exclude_views":
                    parse_exclude_views(value)
            except ValueError:
                raise _row_error(path, i, name, f"column {col!r}: {value!r} is not a valid {kind if col != 'exclude_views' else 'list of tilt angles'}") from None
        if (out["tilt_series"] is None) == (out["movies"] is None):
            raise _row_error(path, i, name, "give exactly one of 'tilt_series' (a stack) and 'movies' (a folder of movies)")
        if out["gain_reference"] is not None and out["movies"] is None:
            raise _row_error(path, i, name, "'gain_reference' is only used with 'movies'")
        for col in ("pixel_size_angstrom", "dose_per_tilt_e_per_A2", "thickness_px"):
            if out[col] is not None and out[col] <= 0:
                raise _row_error(path, i, name, f"column {col!r} must be positive, got {out[col]}")
        if out["tomo_number"] is None:
            out["tomo_number"] = _default_tomo_number(name)
            if out["tomo_number"] is None:
                raise _row_error(path, i, name, "name has no trailing number: give a tomo_number column")
        if check_files:
            for col in PATH_COLUMNS:
                if out[col] is not None and not Path(out[col]).exists():
                    raise _row_error(path, i, name, f"{col} {'folder' if col == 'movies' else 'file'} {out[col]!r} does not exist")
            if out["movies"] is not None and not Path(out["movies"]).is_dir():
                raise _row_error(path, i, name, f"movies {out['movies']!r} is not a folder")
        records.append(out)

    samples = pd.DataFrame.from_records(records).astype(object)
    samples = samples.where(samples.notna(), None)  # empty optional values stay None, not NaN
    for col, what in (("name", "name"), ("tomo_number", "tomo_number")):
        values = [r[col] for r in records]
        for value in values:
            if values.count(value) > 1:
                rows = [k + 1 for k, v in enumerate(values) if v == value]
                raise InputError(path, f"duplicate {what} {value!r} in rows {rows}")
    return samples.set_index("name", drop=False)
