"""Dynamo tomogram indices: table maps (``.doc``) and volume lists (``.vll``).

``.doc`` (table map)
    One tomogram per line: ``index path`` separated by whitespace (tab in
    dynamotable's files, aligned spaces in dynamo2m's). The index is the value
    of table column 20 (``tomo``). Paths may contain spaces (everything after
    the first whitespace run is the path).

``.vll`` (volume list, input of ``dcm -create ... -vll``)
    One entry per tomogram: a line with the tomogram path, followed by optional
    property lines ``* key = value`` that apply to the path above them; entries
    are usually separated by blank lines. Evidence (no real ``.vll`` file is
    stored; the syntax comes from public scripts that write them for Dynamo
    catalogues, found with the code search): TomoBEAR's Dynamo module writes
    ``* ftype = 1``, ``* index = N``, ``* ytilt = -60.00 60.00`` and
    ``* apix = 1.350``; catalogue-building shell scripts write ``* label =``,
    ``* cropFromFile =``, ``* cropFromElsewhere = 1`` and some end the value
    with a MATLAB-style ``;`` (``* apix = 5.4;``, ``* xtilt = 0 0;``). The reader
    strips that trailing ``;``. Numbers are parsed (several numbers give a
    tuple, e.g. ytilt (-60.0, 60.0)); other values stay strings.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from stasnake.errors import InputError
from stasnake.io.atomic import write_text_atomic

_PROPERTY = re.compile(r"^\*\s*([A-Za-z_]\w*)\s*=\s*(.*?)\s*;?\s*$")
_INT = re.compile(r"^[-+]?\d+$")


def _read_lines(path: Path, what: str) -> list[str]:
    if not path.is_file():
        raise InputError(path, f"{what} file does not exist")
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputError(path, f"cannot read {what} file ({exc})") from None


def read_doc(path: str | os.PathLike) -> dict[int, str]:
    """Read a Dynamo table map (``.doc``).

    Parameters
    ----------
    path : str or PathLike
        The ``.doc`` file.

    Returns
    -------
    dict[int, str]
        Tomogram index (table column 20) -> tomogram path, in file order.

    Raises
    ------
    InputError
        Missing or empty file, a line without a path, a non-integer or
        duplicated index; the message names the file and line.
    """
    path = Path(path)
    mapping: dict[int, str] = {}
    for lineno, line in enumerate(_read_lines(path, "table map"), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.split(None, 1)
        if len(parts) != 2:
            raise InputError(path, f"line {lineno}: expected 'index path', got {text!r}")
        if not _INT.match(parts[0]):
            raise InputError(path, f"line {lineno}: index {parts[0]!r} is not an integer")
        index = int(parts[0])
        if index in mapping:
            raise InputError(path, f"line {lineno}: index {index} appears twice")
        mapping[index] = parts[1].strip()
    if not mapping:
        raise InputError(path, "empty table map (no 'index path' lines)")
    return mapping


def write_doc(path: str | os.PathLike, mapping: dict[int, str]) -> None:
    """Write a table map ``index<TAB>path`` per line, sorted by index, atomically."""
    lines = [f"{int(k)}\t{v}\n" for k, v in sorted(mapping.items())]
    write_text_atomic(path, "".join(lines))


def _parse_value(text: str):
    tokens = text.split()
    try:
        numbers = [int(t) if _INT.match(t) else float(t) for t in tokens]
    except ValueError:
        return text
    if not numbers:
        return ""
    return numbers[0] if len(numbers) == 1 else tuple(numbers)


def _format_value(value) -> str:
    if isinstance(value, tuple | list):
        return " ".join(_format_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def read_vll(path: str | os.PathLike) -> list[dict]:
    """Read a Dynamo volume list (``.vll``).

    Parameters
    ----------
    path : str or PathLike
        The ``.vll`` file.

    Returns
    -------
    list of dict
        One dict per tomogram in file order: ``{"path": str, key: value, ...}``
        with the ``* key = value`` properties of that entry (e.g. ``apix``
        1.35 Å, ``ytilt`` (-60, 60) degrees, ``index`` int, ``label`` str).

    Raises
    ------
    InputError
        Missing file, no tomogram, a property line before any path, or a
        malformed property line; the message names the file and line.
    """
    path = Path(path)
    entries: list[dict] = []
    for lineno, line in enumerate(_read_lines(path, "volume list"), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("*"):
            m = _PROPERTY.match(text)
            if not m:
                raise InputError(path, f"line {lineno}: expected '* key = value', got {text!r}")
            if not entries:
                raise InputError(
                    path, f"line {lineno}: property {m.group(1)!r} before any tomogram path"
                )
            entries[-1][m.group(1)] = _parse_value(m.group(2))
        else:
            entries.append({"path": text})
    if not entries:
        raise InputError(path, "empty volume list (no tomogram path)")
    return entries


def write_vll(path: str | os.PathLike, entries: list[dict]) -> None:
    """Write a volume list atomically.

    Parameters
    ----------
    path : str or PathLike
        Output ``.vll`` file.
    entries : list of dict
        Each with ``path`` and any properties (written as ``* key = value``;
        tuples space-separated), e.g. ``{"path": "t1.mrc", "index": 1,
        "apix": 1.35, "ytilt": (-60, 60), "ftype": 1}``. A blank line follows
        each entry.
    """
    lines = []
    for i, entry in enumerate(entries):
        if "path" not in entry or not str(entry["path"]).strip():
            raise ValueError(f"volume list entry {i} has no path")
        lines.append(str(entry["path"]))
        for key, value in entry.items():
            if key != "path":
                lines.append(f"* {key} = {_format_value(value)}")
        lines.append("")
    write_text_atomic(path, "\n".join(lines) + "\n")
