"""CTFFIND4 diagnostic text files (``diagnostic_output.txt``) and conversion to IMOD ``.defocus`` rows.

Format (CTFFIND 4.1): five ``#`` comment lines (program/version, input file,
pixel size / voltage / Cs / amplitude contrast, box size and search limits,
column legend) and one line per micrograph (tilt) with seven numbers:
``#1`` micrograph number (1-based), ``#2`` defocus 1 [Å], ``#3`` defocus 2 [Å],
``#4`` azimuth of astigmatism [degrees], ``#5`` additional phase shift
[radians], ``#6`` cross correlation, ``#7`` spacing (Å) up to which CTF rings
were fit successfully.

Astigmatism angles: CTFFIND's azimuth is the angle of the defocus-1 axis from
the image x axis, counter-clockwise (the convention of
:mod:`stasnake.tilt.ctf`). IMOD (ctfplotter/ctfphaseflip) and novaCTF use an
angle 90 degrees larger (Dynamo wiki, "Angle of astigmatism convention": "The
angle of astigmatism in IMOD/novaCTF is equal to the angle in CTFFIND4 plus 90
degrees"); :func:`ctf_table_to_imod_defocus` adds ``imod_angle_offset_deg``
(default 90) and keeps defocus 1/2 in place. This is taken from that
documentation, not verified against IMOD itself.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.io.atomic import write_text_atomic

COLUMNS = ("micrograph", "defocus_1_angstrom", "defocus_2_angstrom", "astigmatism_azimuth_deg",
           "phase_shift_rad", "cross_correlation", "fit_resolution_angstrom")  # fmt: skip
_LEGEND = ("# Columns: #1 - micrograph number; #2 - defocus 1 [Angstroms]; #3 - defocus 2; "
           "#4 - azimuth of astigmatism; #5 - additional phase shift [radians]; #6 - cross correlation; "
           "#7 - spacing (in Angstroms) up to which CTF rings were fit successfully")  # fmt: skip


def read_ctffind_txt(path: str | os.PathLike) -> pd.DataFrame:
    """Read a CTFFIND4 diagnostic ``.txt`` file.

    Returns
    -------
    pd.DataFrame
        One row per micrograph with columns :data:`COLUMNS` (micrograph int,
        the rest float); the header lines are in ``df.attrs["header"]``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "CTFFIND output file does not exist")
    header, rows = [], []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            header.append(s)
            continue
        tokens = s.split()
        if len(tokens) < 7:
            raise InputError(path, f"line {lineno}: expected 7 numbers, got {len(tokens)}: {s!r}")
        try:
            values = [float(t) for t in tokens[:7]]
        except ValueError:
            raise InputError(path, f"line {lineno}: not numeric: {s!r}") from None
        rows.append(values)
    if not rows:
        raise InputError(path, "no micrograph rows in CTFFIND output")
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    df["micrograph"] = df["micrograph"].round().astype(np.int64)
    df.attrs["header"] = header
    return df


def write_ctffind_txt(path: str | os.PathLike, table: pd.DataFrame, pixel_size_angstrom: float, voltage_kv: float,
                      cs_mm: float, amplitude_contrast: float, input_name: str = "stack.mrc",
                      box_size: int = 0, resolution_range_angstrom=(30.0, 5.0),
                      defocus_range_angstrom=(5000.0, 60000.0)) -> None:  # fmt: skip
    """Write a CTFFIND4-style diagnostic ``.txt`` file atomically.

    Parameters
    ----------
    path : str or PathLike
        Output file.
    table : pd.DataFrame
        Rows in micrograph order with defocus_u_angstrom, defocus_v_angstrom,
        astigmatism_angle_deg, score, fit_resolution_angstrom and optionally
        phase_shift_rad (the output of
        :func:`stasnake.tilt.ctf_estimate.estimate_tilt_series_ctf`).
    pixel_size_angstrom, voltage_kv, cs_mm, amplitude_contrast : float
        Written to the header.
    input_name : str
        Input file name for the header.
    box_size : int
        Spectrum (tile) size for the header.
    resolution_range_angstrom, defocus_range_angstrom : (float, float)
        Fitting band and defocus search range (Å) for the header.
    """
    for c in ("defocus_u_angstrom", "defocus_v_angstrom", "astigmatism_angle_deg", "score", "fit_resolution_angstrom"):
        if c not in table.columns:
            raise KeyError(f"CTF table needs column {c!r}")
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    lines = [
        f"# Output from CTFFind version 4.1.14 (stasnake), run on {now}",
        f"# Input file: {input_name} ; Number of micrographs: {len(table)}",
        f"# Pixel size: {pixel_size_angstrom:.3f} Angstroms ; acceleration voltage: {voltage_kv:.1f} keV ; "
        f"spherical aberration: {cs_mm:.2f} mm ; amplitude contrast: {amplitude_contrast:.2f}",
        f"# Box size: {int(box_size)} pixels ; min. res.: {resolution_range_angstrom[0]:.1f} Angstroms ; "
        f"max. res.: {resolution_range_angstrom[1]:.1f} Angstroms ; min. def.: {defocus_range_angstrom[0]:.1f} um; "
        f"max. def. {defocus_range_angstrom[1]:.1f} um",
        _LEGEND,
    ]  # (CTFFIND itself labels the defocus limits "um" while writing Å)
    phase = table["phase_shift_rad"].to_numpy(float) if "phase_shift_rad" in table.columns else np.zeros(len(table))
    for i, r in enumerate(table.itertuples(index=False)):
        lines.append(f"{i + 1:.6f} {r.defocus_u_angstrom:.6f} {r.defocus_v_angstrom:.6f} {r.astigmatism_angle_deg:.6f} "
                     f"{phase[i]:.6f} {r.score:.6f} {r.fit_resolution_angstrom:.6f}")  # fmt: skip
    write_text_atomic(path, "\n".join(lines) + "\n")


IMOD_ASTIGMATISM_ANGLE_OFFSET_DEG = 90.0
"""IMOD .defocus angle = CTFFIND angle + 90 degrees (defocus1 kept as U).

Dynamo wiki "Angle of astigmatism convention"; TOMOMAN's GCTF -> ctfphaseflip
converter writes the same geometry as defocus1 = V, defocus2 = U with the angle
unchanged.
"""


def ctf_table_to_imod_defocus(table: pd.DataFrame, imod_angle_offset_deg: float = IMOD_ASTIGMATISM_ANGLE_OFFSET_DEG) -> pd.DataFrame:
    """Rows for :func:`stasnake.io.imod.write_defocus` from a CTF table (one row per view).

    Parameters
    ----------
    table : pd.DataFrame
        tilt_angle_deg, defocus_u_angstrom, defocus_v_angstrom,
        astigmatism_angle_deg (CTFFIND convention), in the order of the views
        of the stack the .defocus file will describe (sorted by tilt for
        ctfphaseflip on an aligned stack).
    imod_angle_offset_deg : float
        Added to the CTFFIND angle (see the module docstring); result in [0, 180).

    Returns
    -------
    pd.DataFrame
        view_start, view_end (1-based), tilt_start_deg, tilt_end_deg,
        defocus1_nm, defocus2_nm, astigmatism_angle_deg.
    """
    n = len(table)
    views = np.arange(1, n + 1)
    t = table["tilt_angle_deg"].to_numpy(float)
    return pd.DataFrame({
        "view_start": views, "view_end": views, "tilt_start_deg": t, "tilt_end_deg": t,
        "defocus1_nm": table["defocus_u_angstrom"].to_numpy(float) / 10.0,
        "defocus2_nm": table["defocus_v_angstrom"].to_numpy(float) / 10.0,
        "astigmatism_angle_deg": (table["astigmatism_angle_deg"].to_numpy(float) + imod_angle_offset_deg) % 180.0,
    })  # fmt: skip
