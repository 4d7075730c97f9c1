"""Short human-readable summaries of the files stasnake reads (``stasnake info``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from stasnake.errors import InputError

_MRC = {".mrc", ".mrcs", ".st", ".rec", ".map", ".ali"}


def _range(values, fmt: str = "{:.4g}") -> str:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return "n/a"
    return f"{fmt.format(v.min())} .. {fmt.format(v.max())}"


def _stats(data: np.ndarray) -> str:
    # chunked over the first axis so memory-mapped tomograms are not loaded at once
    lo, hi, total, n = np.inf, -np.inf, 0.0, 0
    flat = data.reshape(data.shape[0], -1) if data.ndim > 1 else data.reshape(1, -1)
    step = max(1, int(2**24 // max(1, flat.shape[1])))
    for i in range(0, flat.shape[0], step):
        chunk = np.asarray(flat[i : i + step])
        if np.iscomplexobj(chunk):
            chunk = np.abs(chunk)
        chunk = chunk.astype(np.float64)
        lo, hi = min(lo, chunk.min()), max(hi, chunk.max())
        total += chunk.sum()
        n += chunk.size
    return f"min {lo:.4g}  max {hi:.4g}  mean {total / max(n, 1):.4g}"


def _summarize_mrc(path: Path) -> list[str]:
    from stasnake.io.mrc import read_mrc, read_mrc_header

    header = read_mrc_header(path)
    data, _ = read_mrc(path, mmap=True)
    try:
        stats = _stats(data)
    finally:
        del data
    kind = "image stack" if header["is_stack"] else "volume"
    return [
        f"MRC {kind}: shape (z, y, x) {header['shape']}  dtype {header['dtype']}",
        f"pixel size {header['pixel_size_angstrom']:.4g} Å",
        stats,
    ]


def _summarize_em(path: Path) -> list[str]:
    from stasnake.io.em import read_em

    data, header = read_em(path, mmap=True)
    try:
        stats = _stats(data)
    finally:
        del data
    return [
        f"EM volume: shape (z, y, x) {header['shape']}  dtype {header['dtype'].newbyteorder('=')}",
        f"pixel size {header['pixel_size_angstrom']:.4g} Å (0 = not stored)",
        stats,
    ]


def _summarize_tbl(path: Path) -> list[str]:
    from stasnake.io.dynamo_table import read_table

    t = read_table(path)
    lines = [f"Dynamo table: {len(t)} particles, {len(t.columns)} columns"]
    if len(t):
        tomos = t["tomo"].value_counts().sort_index()
        lines.append(
            f"tomograms: {len(tomos)} ({', '.join(f'{k}: {v}' for k, v in tomos.head(8).items())}"
            + (", ..." if len(tomos) > 8 else "")
            + ")"
        )
        for c in ("x", "y", "z", "tdrot", "tilt", "narot", "cc"):
            lines.append(f"{c:>6}: {_range(t[c])}")
        if "apix" in t.columns and (t["apix"] > 0).any():
            lines.append(f"  apix: {_range(t['apix'])} Å")
    return lines


def _summarize_star(path: Path) -> list[str]:
    from stasnake.io.star import read_star

    blocks = read_star(path)
    lines = [f"STAR file: {len(blocks)} block(s)"]
    for name, df in blocks.items():
        lines.append(f"  data_{name}: {len(df)} rows x {len(df.columns)} columns")
        for key in ("rlnTomoName", "rlnMicrographName"):
            if key in df.columns and len(df) > 1:
                lines.append(f"    {df[key].nunique()} distinct {key}")
                break
    return lines


def _summarize_mdoc(path: Path) -> list[str]:
    from stasnake.io.mdoc import read_mdoc

    header, df = read_mdoc(path, allow_montage=True)
    tilts = df["TiltAngle"].to_numpy(dtype=np.float64)
    steps = np.diff(np.sort(tilts))
    step = float(np.median(steps)) if steps.size else float("nan")
    lines = [
        f"SerialEM mdoc: {len(df)} images"
        + (" (MONTAGE, not a tilt series)" if "PieceCoordinates" in df else ""),
        f"tilt range {tilts.min():.2f} .. {tilts.max():.2f} deg, step {step:.2f} deg",
        f"first tilts in acquisition order: {', '.join(f'{t:.1f}' for t in tilts[:6])}",
    ]
    apix = header.get("PixelSpacing", df["PixelSpacing"].iloc[0] if "PixelSpacing" in df else None)
    lines.append(f"pixel size {apix} Å" if apix is not None else "pixel size: not given")
    if "TiltAxisAngle" in header:
        lines.append(f"tilt axis {header['TiltAxisAngle']} deg")
    if "ExposureDose" in df:
        dose = df["ExposureDose"].to_numpy(dtype=np.float64)
        lines.append(
            f"dose per tilt {_range(dose)} e/Å²"
            + ("  (0: must come from the user)" if not dose.any() else "")
        )
    if "ImageSize" in header:
        lines.append(f"image size {header['ImageSize']}")
    return lines


def _summarize_cmm(path: Path) -> list[str]:
    from stasnake.io.cmm import read_cmm

    df = read_cmm(path)
    sets = df["set_name"].value_counts(sort=False)
    lines = [f"marker file: {len(df)} markers in {len(sets)} set(s)"]
    lines += [f"  {name!r}: {n}" for name, n in sets.items()]
    for c in ("x_angstrom", "y_angstrom", "z_angstrom"):
        lines.append(f"  {c}: {_range(df[c])}")
    return lines


def _summarize_tlt(path: Path) -> list[str]:
    from stasnake.io.imod import read_tlt

    t = read_tlt(path)
    steps = np.diff(np.sort(t))
    step = float(np.median(steps)) if steps.size else float("nan")
    return [f"tilt angles: {len(t)} tilts, {t.min():.2f} .. {t.max():.2f} deg, step {step:.2f} deg"]


def _summarize_xf(path: Path) -> list[str]:
    from stasnake.io.imod import read_xf, xf_tilt_axis_angle_deg

    xf = read_xf(path)
    axis = xf_tilt_axis_angle_deg(xf)
    det = xf[:, 0] * xf[:, 3] - xf[:, 1] * xf[:, 2]
    return [
        f"IMOD transforms: {len(xf)} views",
        f"tilt axis -atan2(A21, A11): mean {axis.mean():.2f} deg (range {_range(axis, '{:.2f}')})",
        f"det(A): {_range(det)};  shifts DX {_range(xf[:, 4], '{:.1f}')}, DY {_range(xf[:, 5], '{:.1f}')} px",
    ]


def _summarize_defocus(path: Path) -> list[str]:
    from stasnake.io.imod import read_defocus

    df = read_defocus(path)
    lines = [
        f"IMOD defocus file version {df.attrs['version']} (flags {df.attrs['flags']}): {len(df)} entries",
        f"tilts {_range(df['tilt_start_deg'], '{:.2f}')} deg; defocus1 {_range(df['defocus1_nm'], '{:.1f}')} nm",
    ]
    if df["defocus2_nm"].notna().any():
        lines.append(f"defocus2 {_range(df['defocus2_nm'], '{:.1f}')} nm")
    if df["phase_shift_deg"].notna().any():
        lines.append(f"phase shift {_range(df['phase_shift_deg'], '{:.1f}')} deg")
    return lines


def _summarize_doc(path: Path) -> list[str]:
    from stasnake.io.dynamo_doc import read_doc

    m = read_doc(path)
    first = next(iter(m.items()))
    return [
        f"Dynamo table map: {len(m)} tomograms, indices {min(m)} .. {max(m)}",
        f"  {first[0]}: {first[1]}",
    ]


def _summarize_vll(path: Path) -> list[str]:
    from stasnake.io.dynamo_doc import read_vll

    entries = read_vll(path)
    keys = sorted({k for e in entries for k in e if k != "path"})
    return [
        f"Dynamo volume list: {len(entries)} tomograms",
        f"properties: {', '.join(keys) or 'none'}",
    ]


_HANDLERS = {
    ".em": _summarize_em,
    ".tbl": _summarize_tbl,
    ".star": _summarize_star,
    ".mdoc": _summarize_mdoc,
    ".cmm": _summarize_cmm,
    ".tlt": _summarize_tlt,
    ".rawtlt": _summarize_tlt,
    ".xtilt": _summarize_tlt,
    ".xf": _summarize_xf,
    ".defocus": _summarize_defocus,
    ".doc": _summarize_doc,
    ".vll": _summarize_vll,
} | dict.fromkeys(_MRC, _summarize_mrc)

SUPPORTED_SUFFIXES = tuple(sorted(_HANDLERS))


def summarize(path: str | os.PathLike) -> str:
    """A short multi-line summary of a supported file.

    Parameters
    ----------
    path : str or PathLike
        .mrc/.mrcs/.st/.rec/.map/.ali, .em, .tbl, .star, .mdoc, .cmm,
        .tlt/.rawtlt/.xtilt, .xf, .defocus, .doc or .vll file. Maps are read
        memory-mapped.

    Returns
    -------
    str
        The file name on the first line, then shape / dtype / pixel size /
        statistics for maps, row counts and ranges for tables, tilt range and
        dose for mdoc files, and so on.

    Raises
    ------
    InputError
        Unknown extension, missing file, or any reader error.
    """
    path = Path(path)
    handler = _HANDLERS.get(path.suffix.lower())
    if handler is None:
        raise InputError(
            path, f"unknown file type {path.suffix!r}; supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.is_file():
        raise InputError(path, "file does not exist")
    lines = handler(path)
    size = path.stat().st_size
    return "\n".join([f"{path.name} ({size:,} bytes)", *(f"  {ln}" for ln in lines)])


def table_summary(df: pd.DataFrame) -> str:
    """One line per numeric column with its range (helper for other summaries)."""
    return "\n".join(
        f"{c}: {_range(df[c])}" for c in df.columns if pd.api.types.is_numeric_dtype(df[c])
    )
