"""SerialEM ``.mdoc`` metadata files (tilt series).

Format (SerialEM help, "about_formats"): ``key = value`` lines. Lines before the
first section are global (PixelSpacing, ImageSize, DataMode, Voltage, ...).
Title lines ``[T = ...]`` (SerialEM also writes a bare ``T = ...`` first line in
frame-set files) carry free text such as ``Tilt axis angle = 85.3, binning = 4``.
Sections start with ``[Name = value]``; one ``[ZValue = N]`` section per image
of the stack, N being its 0-based index in the file (= acquisition order for a
tilt series).

What this reader does:

* CRLF and LF give identical results (lines are stripped).
* Only ``[ZValue]`` sections become rows. ``[FrameSet]`` sections (frame-set
  files) and ``[MontSection]`` sections (montages) are skipped and counted in
  ``header["skipped_sections"]``.
* Montages are refused: a file with ``Montage = 1``, a ``[MontSection]`` or
  ``PieceCoordinates`` in its sections is a montage (pieces of one large image,
  not a tilt series) and raises :class:`InputError` unless
  ``allow_montage=True``.
* Values are parsed per token: one number -> int or float; several numbers ->
  a tuple of numbers (ImageShift, StagePosition, MinMaxMean, ImageSize...);
  anything else stays a string (DateTime, SubFramePath).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.io.atomic import write_text_atomic

_SECTION = re.compile(r"^\[\s*(\w+)\s*=\s*(.*?)\s*\]$")
_TITLE = re.compile(r"^\[\s*T\s*=\s*(.*)\]$")
_TILT_AXIS = re.compile(r"Tilt\s*axis\s*angle\s*=\s*([-+]?[0-9.]+(?:[eE][-+]?\d+)?)", re.IGNORECASE)
_INT = re.compile(r"^[-+]?\d+$")

#: Header keys computed by :func:`read_mdoc` (not written back as key = value lines).
DERIVED_HEADER_KEYS = ("titles", "TiltAxisAngle", "skipped_sections")


def _parse_token(token: str) -> int | float:
    if _INT.match(token):
        return int(token)
    return float(token)


def parse_value(text: str):
    """Parse one mdoc value: int, float, tuple of numbers, or the stripped string."""
    text = text.strip()
    tokens = text.split()
    if not tokens:
        return ""
    try:
        numbers = [_parse_token(t) for t in tokens]
    except ValueError:
        return text
    if any(isinstance(n, float) and not np.isfinite(n) for n in numbers) and len(tokens) == 1:
        return numbers[0]
    return numbers[0] if len(numbers) == 1 else tuple(numbers)


def _column(values: list) -> pd.Series | list:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int) for v in present) and len(present) == len(values):
        return pd.Series(values, dtype=np.int64)
    if present and all(isinstance(v, int | float) for v in present):
        return pd.Series([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return pd.Series(values)  # strings (str dtype under pandas 3) or tuples (object)


def read_mdoc(path: str | os.PathLike, allow_montage: bool = False) -> tuple[dict, pd.DataFrame]:
    """Read a SerialEM ``.mdoc`` file of a tilt series.

    Parameters
    ----------
    path : str or PathLike
        The ``.mdoc`` file (CRLF or LF line endings).
    allow_montage : bool
        Return the ``[ZValue]`` pieces of a montage instead of refusing it.

    Returns
    -------
    header : dict
        Global ``key = value`` pairs (e.g. ``PixelSpacing`` 5.4 in Å,
        ``ImageSize`` (924, 958), ``DataMode``, ``Voltage``), plus ``titles``
        (list of title strings), ``TiltAxisAngle`` (degrees, from a title
        "Tilt axis angle = 85.3, ..." when present) and ``skipped_sections``
        ({section type: count} for non-ZValue sections, when there were any).
    sections : pd.DataFrame
        One row per ``[ZValue = N]`` section in file order with SerialEM key
        names as columns (``ZValue``, ``TiltAngle`` in degrees,
        ``ExposureDose`` in e/Å², ``PixelSpacing`` in Å, ``Defocus``,
        ``TargetDefocus`` in µm, ``DateTime``, ``SubFramePath``, ...). Numeric
        keys are int64/float64 columns; multi-number keys hold tuples.

    Raises
    ------
    InputError
        Missing file, no ``[ZValue]`` section, a ZValue section without
        TiltAngle, a malformed line, or a montage (unless ``allow_montage``).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "mdoc file does not exist")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(path, f"cannot read mdoc file ({exc})") from None
    header: dict = {}
    titles: list[str] = []
    skipped: dict[str, int] = {}
    rows: list[dict] = []
    current: dict | None = None  # the ZValue section being filled
    in_other = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        m = _TITLE.match(line)
        if m:
            titles.append(m.group(1).strip())
            continue
        m = _SECTION.match(line)
        if m:
            name, value = m.group(1), m.group(2)
            if name == "ZValue":
                try:
                    z = int(value)
                except ValueError:
                    raise InputError(
                        path, f"line {lineno}: [ZValue = {value}] is not an integer"
                    ) from None
                current = {"ZValue": z, "_line": lineno}
                rows.append(current)
                in_other = False
            else:
                skipped[name] = skipped.get(name, 0) + 1
                current = None
                in_other = True
            continue
        if "=" not in line:
            raise InputError(path, f"line {lineno}: expected 'key = value', got {line!r}")
        key, value = (s.strip() for s in line.split("=", 1))
        if not key:
            raise InputError(path, f"line {lineno}: empty key in {line!r}")
        if current is None and not in_other:
            if key == "T":
                titles.append(value)
            else:
                header[key] = parse_value(value)
        elif current is not None:
            current[key] = parse_value(value)
    header["titles"] = titles
    for title in titles:
        m = _TILT_AXIS.search(title)
        if m:
            header["TiltAxisAngle"] = float(m.group(1))
            break
    if skipped:
        header["skipped_sections"] = skipped
    if not rows:
        what = f" (only {', '.join(f'[{k}]' for k in skipped)} sections)" if skipped else ""
        raise InputError(path, f"no [ZValue] sections{what}: not a tilt-series mdoc")
    montage = (
        int(header.get("Montage", 0) or 0) == 1
        or "MontSection" in skipped
        or any("PieceCoordinates" in r for r in rows)
    )
    if montage and not allow_montage:
        raise InputError(
            path,
            "this is a montage mdoc (Montage = 1 / [MontSection] / PieceCoordinates), not a tilt series",
        )
    for r in rows:
        if "TiltAngle" not in r:
            raise InputError(path, f"[ZValue = {r['ZValue']}] (line {r['_line']}) has no TiltAngle")
    keys: list[str] = []
    for r in rows:
        for k in r:
            if k != "_line" and k not in keys:
                keys.append(k)
    data = {k: _column([r.get(k) for r in rows]) for k in keys}
    return header, pd.DataFrame(data)


def _format_value(value) -> str:
    if isinstance(value, tuple | list | np.ndarray):
        return " ".join(_format_value(v) for v in value)
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if np.isnan(v):
            return "NaN"
        return repr(v)  # shortest exact representation; keeps float-ness ('4.0')
    return str(value)


def format_mdoc(header: dict, sections: pd.DataFrame) -> str:
    """SerialEM-style mdoc text for :func:`write_mdoc` (LF line endings)."""
    lines: list[str] = []
    for key, value in header.items():
        if key in DERIVED_HEADER_KEYS or value is None:
            continue
        lines.append(f"{key} = {_format_value(value)}")
    lines.append("")
    titles = list(header.get("titles") or [])
    if "TiltAxisAngle" in header and not any(_TILT_AXIS.search(t) for t in titles):
        titles.append(
            f"Tilt axis angle = {_format_value(float(header['TiltAxisAngle']))}, binning = 1"
        )
    for title in titles:
        lines.append(f"[T = {title}]")
        lines.append("")
    if "TiltAngle" not in sections.columns:
        raise ValueError("sections need a TiltAngle column")
    columns = [c for c in sections.columns if c != "ZValue"]
    zvalues = (
        sections["ZValue"].to_numpy() if "ZValue" in sections.columns else np.arange(len(sections))
    )
    for i, (_, row) in enumerate(sections.iterrows()):
        lines.append(f"[ZValue = {int(zvalues[i])}]")
        for c in columns:
            value = row[c]
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            if isinstance(value, float) and value.is_integer() and sections[c].dtype == np.int64:
                value = int(value)
            lines.append(f"{c} = {_format_value(value)}")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_mdoc(path: str | os.PathLike, header: dict, sections: pd.DataFrame) -> None:
    """Write a SerialEM-style ``.mdoc`` atomically.

    Parameters
    ----------
    path : str or PathLike
        Output file.
    header : dict
        Global keys as returned by :func:`read_mdoc`; ``titles`` are written
        as ``[T = ...]`` lines, ``TiltAxisAngle`` as a title
        "Tilt axis angle = X, binning = 1" when no title carries it already.
    sections : pd.DataFrame
        One row per image with a ``TiltAngle`` column (degrees) and optionally
        ``ZValue`` (default 0..n-1) and any other SerialEM keys. Tuples are
        written space-separated; missing values (None/NaN) are left out.
    """
    write_text_atomic(path, format_mdoc(header, sections))


def tilt_axis_angle_deg(header: dict) -> float | None:
    """Tilt-axis angle (degrees) from a header of :func:`read_mdoc`, or None."""
    value = header.get("TiltAxisAngle")
    return None if value is None else float(value)
