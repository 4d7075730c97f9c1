"""Tilt-series import: acquisition parameters from the mdoc, sorting, dose.

The raw stack may be in any order (SerialEM writes acquisition order). The
import sorts it by tilt angle, which is the order of every per-tilt file
(``.tlt``, ``.xf``, ``_ctf.txt``, ``.defocus``), and records each tilt's
acquisition index and pre-exposure dose (the dose received before the tilt was
taken, counting every earlier exposure including excluded views).
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

import numpy as np
import pandas as pd

from stasnake.errors import InputError

log = logging.getLogger(__name__)

_MDOC_DATETIME_FORMATS = ("%d-%b-%y  %H:%M:%S", "%d-%b-%y %H:%M:%S", "%d-%b-%Y  %H:%M:%S", "%d-%b-%Y %H:%M:%S")


def _parse_datetime(text) -> datetime | None:
    for fmt in _MDOC_DATETIME_FORMATS:
        try:
            return datetime.strptime(str(text).strip(), fmt)
        except ValueError:
            continue
    return None


def acquisition_order(sections: pd.DataFrame) -> np.ndarray:
    """Acquisition rank (0 = first exposed) of each mdoc section.

    Uses DateTime when every section has a distinct parseable one, else ZValue.
    """
    if "DateTime" in sections:
        times = [_parse_datetime(t) for t in sections["DateTime"]]
        if all(t is not None for t in times) and len(set(times)) == len(times):
            return np.argsort(np.argsort(np.array(times, dtype="datetime64[s]"), kind="stable"))
    return np.argsort(np.argsort(sections["ZValue"].to_numpy(), kind="stable"))


def _first_number(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, list | tuple | np.ndarray):
        value = value[0] if len(value) else None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(f) else f


def mdoc_pixel_size(header: dict, sections: pd.DataFrame) -> float | None:
    """``PixelSpacing`` (Å) of an mdoc: the global value, else the first section's; None if absent."""
    apix = _first_number(header.get("PixelSpacing"))
    if apix is None and "PixelSpacing" in sections:
        apix = _first_number(sections["PixelSpacing"].iloc[0])
    return apix


def acquisition_parameters(header: dict, sections: pd.DataFrame, overrides: dict, mdoc_path) -> dict:
    """Pixel size, tilt axis, dose and optics of a tilt series.

    Parameters
    ----------
    header, sections
        From :func:`stasnake.io.mdoc.read_mdoc`.
    overrides : dict
        ``pixel_size_angstrom``, ``tilt_axis_angle_deg``, ``dose_per_tilt_e_per_A2``
        (None = from the mdoc), ``voltage_kv``, ``cs_mm``, ``amplitude_contrast``.
    mdoc_path : str
        For error messages.

    Returns
    -------
    dict
        ``pixel_size_angstrom``, ``tilt_axis_angle_deg``, ``dose_per_tilt_e_per_A2``
        (array, one per section), ``voltage_kv``, ``cs_mm``, ``amplitude_contrast``.
    """
    apix = overrides.get("pixel_size_angstrom")
    if apix is None:
        apix = mdoc_pixel_size(header, sections)
    if not apix or apix <= 0:
        raise InputError(mdoc_path, "no pixel size (PixelSpacing); set acquisition.pixel_size_angstrom in the config or the sample list")

    axis = overrides.get("tilt_axis_angle_deg")
    if axis is None:
        axis = _first_number(header.get("TiltAxisAngle"))
    if axis is None:
        raise InputError(mdoc_path, "no tilt-axis angle in the mdoc titles; set acquisition.tilt_axis_angle_deg")

    dose = overrides.get("dose_per_tilt_e_per_A2")
    if dose is not None:
        doses = np.full(len(sections), float(dose))
    elif "ExposureDose" in sections and (sections["ExposureDose"].astype(float) > 0).all():
        doses = sections["ExposureDose"].to_numpy(dtype=float)
    else:
        raise InputError(
            mdoc_path,
            "ExposureDose is missing or 0 for some tilts, so the dose is unknown; "
            "set acquisition.dose_per_tilt_e_per_A2 in the config or the sample list",
        )
    voltage = _first_number(header.get("Voltage")) or overrides.get("voltage_kv", 300.0)
    return {
        "pixel_size_angstrom": float(apix),
        "tilt_axis_angle_deg": float(axis),
        "dose_per_tilt_e_per_A2": doses,
        "voltage_kv": float(voltage),
        "cs_mm": float(overrides.get("cs_mm", 2.7)),
        "amplitude_contrast": float(overrides.get("amplitude_contrast", 0.1)),
    }


def sort_tilts(
    tilt_angles_deg: np.ndarray,
    acquisition_rank: np.ndarray,
    dose_per_tilt_e_per_A2: np.ndarray,
    exclude_angles_deg=(),
    tolerance_deg: float = 0.5,
    source: str = "mdoc",
) -> pd.DataFrame:
    """Order of the sorted stack, with acquisition index and pre-exposure dose.

    Parameters
    ----------
    tilt_angles_deg : np.ndarray
        (n,) tilt angle of each image of the raw stack, degrees.
    acquisition_rank : np.ndarray
        (n,) 0 for the first exposed image, 1 for the next, ...
    dose_per_tilt_e_per_A2 : np.ndarray
        (n,) exposure of each image (e/Å²).
    exclude_angles_deg : sequence of float
        Tilt angles to drop (matched within ``tolerance_deg``).
    tolerance_deg : float
        Matching tolerance for excluded angles.
    source : str
        Name of the file the angles came from (error messages).

    Returns
    -------
    pd.DataFrame
        One row per kept tilt, sorted by tilt angle: ``raw_index`` (image in the
        raw stack), ``full_sorted_index`` (position in the sorted stack of all
        views, before exclusion: the row of an imported ``.xf``), ``tilt_angle_deg``, ``acquisition_index``, ``dose_e_per_A2``,
        ``pre_exposure_e_per_A2``.
    """
    angles = np.asarray(tilt_angles_deg, dtype=float)
    rank = np.asarray(acquisition_rank)
    dose = np.asarray(dose_per_tilt_e_per_A2, dtype=float)
    by_time = np.argsort(rank, kind="stable")
    pre = np.empty_like(dose)
    pre[by_time] = np.concatenate([[0.0], np.cumsum(dose[by_time])[:-1]])
    keep = np.ones(len(angles), dtype=bool)
    for a in exclude_angles_deg:
        hit = np.abs(angles - a) <= tolerance_deg
        if not hit.any():
            raise InputError(source, f"excluded view {a:g} deg matches no tilt angle (tilts {angles.min():g}..{angles.max():g})")
        keep &= ~hit
    if keep.sum() < 2:
        raise InputError(source, "fewer than two tilts are left after excluding views")
    full_sorted_index = np.empty(len(angles), dtype=int)
    full_sorted_index[np.argsort(angles, kind="stable")] = np.arange(len(angles))
    order = pd.DataFrame(
        {
            "raw_index": np.arange(len(angles)),
            "full_sorted_index": full_sorted_index,
            "tilt_angle_deg": angles,
            "acquisition_index": rank,
            "dose_e_per_A2": dose,
            "pre_exposure_e_per_A2": pre,
        }
    )[keep]
    return order.sort_values("tilt_angle_deg", kind="stable").reset_index(drop=True)


def check_sections(sections: pd.DataFrame, n_images: int, mdoc_path, stack_path=None) -> pd.DataFrame:
    """The mdoc's sections sorted by ``ZValue``, checked to describe images 0..n-1 of the stack.

    Raises
    ------
    InputError
        Naming the mdoc (and the stack) when the counts differ or the
        ZValues are not 0..n-1.
    """
    sections = sections.sort_values("ZValue").reset_index(drop=True)
    stack = f" {stack_path}" if stack_path is not None else ""
    if len(sections) != n_images:
        raise InputError(mdoc_path, f"describes {len(sections)} tilts but the stack{stack} has {n_images} images")
    if not np.array_equal(sections["ZValue"].to_numpy(), np.arange(n_images)):
        raise InputError(mdoc_path, f"ZValues are not 0..{n_images - 1}, so images cannot be matched to sections")
    return sections


def plan_import(header: dict, sections: pd.DataFrame, n_images: int, overrides: dict, exclude_angles_deg, mdoc_path) -> tuple[pd.DataFrame, dict]:
    """Check an mdoc against its stack and work out the sorted order.

    Parameters
    ----------
    header, sections
        From :func:`stasnake.io.mdoc.read_mdoc`; section ZValue k describes
        image k of the raw stack.
    n_images : int
        Number of images in the raw stack.
    overrides : dict
        See :func:`acquisition_parameters`.
    exclude_angles_deg : sequence of float
        Tilt angles to exclude.
    mdoc_path : str
        For error messages.

    Returns
    -------
    order : pd.DataFrame
        See :func:`sort_tilts`.
    acquisition : dict
        See :func:`acquisition_parameters` (dose array replaced by the scalar
        mean dose per tilt).
    """
    sections = check_sections(sections, n_images, mdoc_path)
    acq = acquisition_parameters(header, sections, overrides, mdoc_path)
    order = sort_tilts(
        sections["TiltAngle"].to_numpy(dtype=float),
        acquisition_order(sections),
        acq["dose_per_tilt_e_per_A2"],
        exclude_angles_deg,
        source=str(mdoc_path),
    )
    acq = dict(acq, dose_per_tilt_e_per_A2=float(np.mean(acq["dose_per_tilt_e_per_A2"])), n_views_raw=int(n_images))
    excluded = sorted(set(sections["TiltAngle"].astype(float)) - set(order["tilt_angle_deg"]))
    if excluded:
        log.info("excluded views at tilt angles %s", excluded)
    return order, acq


def read_acquisition(path) -> dict:
    """The ``{ts}_acquisition.json`` written at import (see :func:`plan_import`)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
