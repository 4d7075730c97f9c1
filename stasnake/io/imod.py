"""IMOD text files: tilt angles (``.tlt``/``.rawtlt``), transforms (``.xf``) and
ctfplotter/ctfphaseflip defocus files (``.defocus``).

``.tlt`` / ``.rawtlt``
    One tilt angle (degrees) per line, one line per image of the stack in stack
    order. Extra columns are tolerated (e.g. a dose column written by other
    tools) and ignored unless asked for.
``.xf``
    One line per image: ``A11 A12 A21 A22 DX DY`` written by IMOD as
    ``%12.7f%12.7f%12.7f%12.7f%12.3f%12.3f``. The 2x2 matrix A and the shift D
    (pixels) map raw to aligned image coordinates about the image centre
    c: ``x_ali - c = A (x_raw - c) + D`` (see the project's geometry
    conventions). For a pure rotation A = R(-psi) and the tilt-axis angle is
    psi = -atan2(A21, A11).
``.defocus`` (ctfplotter/ctfphaseflip, IMOD man page of ctfphaseflip)
    Version 2: every line ``view_start view_end tilt_start tilt_end defocus``
    (views 1-based and inclusive, angles in degrees, defocus in nm,
    underfocus positive); the first line has a sixth field ``2``.
    Version 3: a first line ``flags 0 0.0 0.0 0.0 3`` and then lines
    ``view_start view_end tilt_start tilt_end defocus1 [defocus2 astig_angle]
    [phase_shift] [cuton_freq]`` where the bracketed groups are present when
    flags has bit 1 (astigmatism: defocus2 in nm, angle in degrees), bit 4
    (phase shift, degrees) and bit 32 (cut-on frequency, 1/nm) set.
    Files without a version field (version 1, five fields per line) are read
    as version 2.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.io.atomic import write_text_atomic

XF_FORMAT = "%12.7f%12.7f%12.7f%12.7f%12.3f%12.3f"
DEFOCUS_COLUMNS = (
    "view_start", "view_end", "tilt_start_deg", "tilt_end_deg", "defocus1_nm", "defocus2_nm",
    "astigmatism_angle_deg", "phase_shift_deg", "cuton_freq",
)  # fmt: skip
FLAG_ASTIGMATISM = 1
FLAG_PHASE_SHIFT = 4
FLAG_CUTON = 32


def _lines(path: Path, what: str) -> list[tuple[int, list[str]]]:
    if not path.is_file():
        raise InputError(path, f"{what} file does not exist")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(path, f"cannot read {what} file ({exc})") from None
    return [(i, ln.split()) for i, ln in enumerate(text.splitlines(), start=1) if ln.strip()]


def _floats(tokens: list[str], path: Path, lineno: int) -> list[float]:
    try:
        return [float(t) for t in tokens]
    except ValueError:
        raise InputError(
            path, f"line {lineno}: non-numeric field in {' '.join(tokens)!r}"
        ) from None


def _check_count(path: Path, n: int, n_expected: int | None, what: str) -> None:
    if n_expected is not None and n != n_expected:
        raise InputError(
            path, f"{n} {what} lines, expected {n_expected} (one per image of the stack)"
        )


# --------------------------------------------------------------------------- tlt
def read_tlt(path: str | os.PathLike, n_expected: int | None = None, column: int = 0) -> np.ndarray:
    """Read tilt angles from a ``.tlt``/``.rawtlt`` file.

    Parameters
    ----------
    path : str or PathLike
        The file; one line per image, angle in the first column (degrees).
    n_expected : int, optional
        Raise InputError unless the file has this many lines.
    column : int
        Column to return (0-based); 0 is the tilt angle.

    Returns
    -------
    np.ndarray
        (n,) float64, in file (stack) order.
    """
    path = Path(path)
    rows = _lines(path, "tilt-angle")
    if not rows:
        raise InputError(path, "empty tilt-angle file")
    values = []
    for lineno, tokens in rows:
        if len(tokens) <= column:
            raise InputError(
                path, f"line {lineno}: has {len(tokens)} fields, column {column + 1} is missing"
            )
        values.append(_floats(tokens[column : column + 1], path, lineno)[0])
    _check_count(path, len(values), n_expected, "tilt-angle")
    return np.asarray(values, dtype=np.float64)


def write_tlt(path: str | os.PathLike, tilt_angles_deg, decimals: int = 2) -> None:
    """Write tilt angles (degrees), one per line, atomically.

    ``decimals`` = 2 gives IMOD's own ``%.2f`` layout.
    """
    angles = np.asarray(tilt_angles_deg, dtype=np.float64).ravel()
    write_text_atomic(path, "".join(f"{a:8.{decimals}f}\n" for a in angles))


# --------------------------------------------------------------------------- xf
def _split_xf(line: str, tokens: list[str]) -> list[str]:
    if len(tokens) != 6 and len(line.rstrip()) == 72:  # fixed-width fields that touch
        return [line[i : i + 12] for i in range(0, 72, 12)]
    return tokens


def read_xf(path: str | os.PathLike, n_expected: int | None = None) -> np.ndarray:
    """Read an IMOD ``.xf`` transform file.

    Parameters
    ----------
    path : str or PathLike
        The file, one line per image: A11 A12 A21 A22 DX DY.
    n_expected : int, optional
        Raise InputError unless the file has this many lines.

    Returns
    -------
    np.ndarray
        (n, 6) float64, columns A11 A12 A21 A22 DX DY (DX, DY in pixels of
        the stack the transforms were computed for).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "xf file does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        tokens = _split_xf(line, tokens)
        if len(tokens) != 6:
            raise InputError(
                path,
                f"line {lineno}: {len(tokens)} fields, an .xf line needs 6 (A11 A12 A21 A22 DX DY)",
            )
        rows.append(_floats(tokens, path, lineno))
    if not rows:
        raise InputError(path, "empty xf file")
    _check_count(path, len(rows), n_expected, "xf")
    return np.asarray(rows, dtype=np.float64)


def write_xf(path: str | os.PathLike, xf) -> None:
    """Write (n, 6) transforms A11 A12 A21 A22 DX DY in IMOD's fixed width, atomically."""
    xf = np.asarray(xf, dtype=np.float64)
    if xf.ndim != 2 or xf.shape[1] != 6:
        raise ValueError(f"xf must have shape (n, 6), got {xf.shape}")
    write_text_atomic(path, "".join(XF_FORMAT % tuple(row) + "\n" for row in xf))


def xf_tilt_axis_angle_deg(xf) -> np.ndarray:
    """Tilt-axis angle psi (degrees) per row of an (n, 6) xf: ``-atan2(A21, A11)``."""
    xf = np.atleast_2d(np.asarray(xf, dtype=np.float64))
    return -np.degrees(np.arctan2(xf[:, 2], xf[:, 0]))


def xf_from_rotation(tilt_axis_angle_deg, shifts_px=None) -> np.ndarray:
    """Build (n, 6) xf rows for pure rotations A = R(-psi) and shifts D (pixels).

    A = [[cos psi, sin psi], [-sin psi, cos psi]], the inverse of
    :func:`xf_tilt_axis_angle_deg`.
    """
    psi = np.radians(np.atleast_1d(np.asarray(tilt_axis_angle_deg, dtype=np.float64)))
    n = psi.size
    d = (
        np.zeros((n, 2))
        if shifts_px is None
        else np.broadcast_to(np.asarray(shifts_px, float), (n, 2))
    )
    c, s = np.cos(psi), np.sin(psi)
    return np.column_stack([c, s, -s, c, d[:, 0], d[:, 1]])


# --------------------------------------------------------------------------- defocus
def read_defocus(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ctfplotter/ctfphaseflip ``.defocus`` file (version 1, 2 or 3).

    Parameters
    ----------
    path : str or PathLike
        The file.

    Returns
    -------
    pd.DataFrame
        One row per view range with columns :data:`DEFOCUS_COLUMNS`:
        view_start, view_end (1-based, inclusive; int), tilt_start_deg,
        tilt_end_deg, defocus1_nm, defocus2_nm and astigmatism_angle_deg (NaN
        without astigmatism), phase_shift_deg (NaN without phase shift),
        cuton_freq (1/nm; NaN when absent). ``df.attrs`` holds ``version``
        and ``flags``. Defocus is in nm, underfocus positive.

    Raises
    ------
    InputError
        Missing/empty file, a line with the wrong number of fields for the
        flags, or a non-numeric field; the message names the file and line.
    """
    path = Path(path)
    rows = _lines(path, "defocus")
    if not rows:
        raise InputError(path, "empty defocus file")
    first_no, first = rows[0]
    head = _floats(first, path, first_no)
    version, flags = 2, 0
    if len(head) == 6 and head[5] == 3 and head[1] == 0:
        version, flags = 3, int(head[0])
        data_rows = rows[1:]
    elif len(head) == 6 and head[5] == 2:
        data_rows = rows
    elif len(head) == 5:
        version = 1
        data_rows = rows
    else:
        raise InputError(
            path, f"line {first_no}: not a version 2 or 3 defocus header: {' '.join(first)!r}"
        )
    astig, phase, cuton = (
        bool(flags & FLAG_ASTIGMATISM),
        bool(flags & FLAG_PHASE_SHIFT),
        bool(flags & FLAG_CUTON),
    )
    n_fields = 5 + 2 * astig + phase + cuton
    out = []
    for k, (lineno, tokens) in enumerate(data_rows):
        values = _floats(tokens, path, lineno)
        if version == 2 and k == 0:
            values = values[:5]
        if len(values) != n_fields:
            raise InputError(
                path,
                f"line {lineno}: {len(values)} fields, expected {n_fields} for version {version} flags {flags}",
            )
        rec = dict(zip(DEFOCUS_COLUMNS[:5], values[:5], strict=True))
        rec.update(
            defocus2_nm=np.nan,
            astigmatism_angle_deg=np.nan,
            phase_shift_deg=np.nan,
            cuton_freq=np.nan,
        )
        i = 5
        if astig:
            rec["defocus2_nm"], rec["astigmatism_angle_deg"] = values[i], values[i + 1]
            i += 2
        if phase:
            rec["phase_shift_deg"] = values[i]
            i += 1
        if cuton:
            rec["cuton_freq"] = values[i]
        out.append(rec)
    if not out:
        raise InputError(path, "defocus file has a header but no views")
    df = pd.DataFrame(out, columns=list(DEFOCUS_COLUMNS))
    df["view_start"] = df["view_start"].round().astype(np.int64)
    df["view_end"] = df["view_end"].round().astype(np.int64)
    df.attrs["version"] = version
    df.attrs["flags"] = flags
    return df


def _present(df: pd.DataFrame, column: str) -> bool:
    return (
        column in df.columns
        and bool(np.isfinite(df[column].to_numpy(dtype=np.float64)).all())
        and len(df) > 0
    )


def write_defocus(path: str | os.PathLike, df: pd.DataFrame, version: int = 3) -> None:
    """Write a ctfphaseflip defocus file atomically.

    Parameters
    ----------
    path : str or PathLike
        Output file.
    df : pd.DataFrame
        Columns view_start, view_end (1-based), tilt_start_deg, tilt_end_deg,
        defocus1_nm and optionally defocus2_nm + astigmatism_angle_deg,
        phase_shift_deg, cuton_freq (all finite to be written).
    version : {2, 3}
        Version 2 writes only the defocus1 column. Version 3 sets flag 1 when
        defocus2 and the astigmatism angle are present, 4 for the phase shift,
        32 for the cut-on frequency (which needs the phase shift).
    """
    for c in DEFOCUS_COLUMNS[:5]:
        if c not in df.columns:
            raise KeyError(f"defocus table needs column {c!r}")
    lines = []
    base = [
        f"{int(r.view_start)}\t{int(r.view_end)}\t{r.tilt_start_deg:.2f}\t{r.tilt_end_deg:.2f}\t{r.defocus1_nm:8.2f}"
        for r in df.itertuples(index=False)
    ]
    if version == 2:
        lines = [b + ("\t2" if i == 0 else "") for i, b in enumerate(base)]
    elif version == 3:
        astig = _present(df, "defocus2_nm") and _present(df, "astigmatism_angle_deg")
        phase = _present(df, "phase_shift_deg")
        cuton = phase and _present(df, "cuton_freq")
        flags = FLAG_ASTIGMATISM * astig + FLAG_PHASE_SHIFT * phase + FLAG_CUTON * cuton
        lines.append(f"{flags}\t0\t0.0\t0.0\t0.0\t3")
        for i, b in enumerate(base):
            extra = ""
            if astig:
                extra += f"\t{df['defocus2_nm'].iloc[i]:8.2f}\t{df['astigmatism_angle_deg'].iloc[i]:8.3f}"
            if phase:
                extra += f"\t{df['phase_shift_deg'].iloc[i]:8.3f}"
            if cuton:
                extra += f"\t{df['cuton_freq'].iloc[i]:9.5f}"
            lines.append(b + extra)
    else:
        raise ValueError(f"version must be 2 or 3, not {version}")
    write_text_atomic(path, "\n".join(lines) + "\n")
