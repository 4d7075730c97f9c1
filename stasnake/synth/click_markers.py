"""The simulated user of the marker steps (3B and 5B) for the synthetic demo.

A person marks unit centres in ChimeraX because they recognise the unit. The simulated user
does the same with the ground truth of the demo: it finds the units in an average by template
matching the truth unit map (:func:`stasnake.synth.unit.unit_map`), then adds the imprecision
of a mouse click. Use :mod:`stasnake.picking.propose_markers` for the truth-free autopilot.

Conventions: maps (z, y, x), box centre index ``n // 2``; markers 1-based pixels (x, y, z) of
the map (box centre ``n // 2 + 1``); the unit's six-fold axis is the map's z axis (the particle
z is the VLP's outward normal), so only a small orientation search is needed: in-plane angles
over one 60 degree period (the unit is C6) and tilts of up to ``max_tilt_deg`` about in-plane
axes (neighbour units lean outwards on the curved lattice).
"""

from __future__ import annotations

import os

import numpy as np

from stasnake.errors import InputError
from stasnake.io.cmm import pixels_to_markers, write_cmm
from stasnake.picking.propose_markers import (
    EDGE_MARGIN_FRACTION,
    MIN_SCORE_FRACTION,
    NMS_FRACTION,
    ball_mask,
    check_map,
    lattice_connected,
    masked_ncc,
    pick_peaks,
)
from stasnake.sta.rotate import rotate_volume, rotation_about_z


def _rotation_about_x(angle_deg: float) -> np.ndarray:
    a = np.radians(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def search_rotations(
    inplane_step_deg: float = 10.0,
    max_tilt_deg: float = 10.0,
    tilt_directions: int = 6,
    order: int = 6,
) -> list[np.ndarray]:
    """Active rotations of the template: in-plane angles over ``360 / order`` degrees, small tilts.

    Tilts of ``max_tilt_deg`` (and 0) about ``tilt_directions`` in-plane axes, each combined
    with in-plane angles ``0, step, ...`` below ``360 / order``. Returns a list of (3, 3).
    """
    inplane = np.arange(0.0, 360.0 / order - 1e-9, float(inplane_step_deg))
    tilts = [np.eye(3)]
    if max_tilt_deg > 0:
        for k in range(int(tilt_directions)):
            az = rotation_about_z(360.0 * k / tilt_directions)
            tilts.append(az @ _rotation_about_x(max_tilt_deg) @ az.T)
    return [t @ rotation_about_z(a) for t in tilts for a in inplane]


def _template_cube(unit: np.ndarray, rotation: np.ndarray, h: int) -> np.ndarray:
    """Truth unit rotated actively by ``rotation`` about its box centre, cropped to (2h+1)^3."""
    rotated = rotate_volume(unit, rotation.T)
    pad = max(0, h - unit.shape[0] // 2, h - (unit.shape[0] - 1 - unit.shape[0] // 2))
    rotated = np.pad(rotated, pad)
    c = unit.shape[0] // 2 + pad
    return rotated[c - h : c + h + 1, c - h : c + h + 1, c - h : c + h + 1]


def _isotropic_errors(n: int, rms_px: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) Gaussian errors whose root-mean-square length is ``rms_px``."""
    return rng.normal(scale=float(rms_px) / np.sqrt(3.0), size=(n, 3))


def click_unit_centres(
    average,
    pixel_size_angstrom: float,
    truth_unit,
    rng: np.random.Generator,
    click_error_px: float = 1.0,
    lattice_spacing_angstrom: float = 75.0,
    central_only: bool = False,
    protein_sign: float = -1.0,
    min_score_fraction: float = MIN_SCORE_FRACTION,
    edge_margin_px: float | None = None,
) -> np.ndarray:
    """Unit centres as a user who recognises the unit clicks them, with click errors.

    Parameters
    ----------
    average : array_like
        (n, n, n) map (z, y, x): the step-3 average (with ``central_only``) or the step-5
        "average of averages".
    pixel_size_angstrom : float
        Pixel size of the map, Å.
    truth_unit : array_like
        (m, m, m) protein-positive truth unit, its centre at index ``m // 2`` and six-fold axis
        along z (e.g. ``unit_map(m, pixel_size_angstrom)``); any cubic box size.
    rng : np.random.Generator
        Random source of the click errors.
    click_error_px : float
        Root-mean-square 3-D length of the click error, pixels.
    lattice_spacing_angstrom : float
        Lattice spacing, Å: sets the template mask (radius ``spacing / 2``), the minimum
        distance between clicks (``0.7 spacing``) and the default edge margin (``spacing / 3``).
    central_only : bool
        Click only the unit nearest the box centre (step 3B); otherwise all units (step 5B)
        linked to that one by in-layer lattice steps
        (:func:`stasnake.picking.propose_markers.lattice_connected`).
    protein_sign : float
        Sign of protein density in ``average`` (-1: dark, tomogram contrast).
    min_score_fraction : float
        Units must score at least this fraction of the best unit's matching score (masked
        normalised CC, maximum over the template orientations).
    edge_margin_px : float, optional
        Clicked units lie at least this far inside the box, pixels (default ``spacing / 3``).

    Returns
    -------
    np.ndarray
        (k, 3) 1-based pixels (x, y, z); with ``central_only`` k = 1, otherwise the unit nearest
        the box centre first, then by distance from it.

    Raises
    ------
    InputError
        Bad map (see :func:`stasnake.picking.propose_markers.check_map`), truth unit not a finite
        cubic array, negative click error, sign not +-1.
    """
    vol = check_map(average, pixel_size_angstrom, lattice_spacing_angstrom)
    unit = np.asarray(truth_unit, np.float32)
    if unit.ndim != 3 or len(set(unit.shape)) != 1 or not np.all(np.isfinite(unit)):
        raise InputError("truth_unit", f"must be a finite cubic 3-D array, got shape {unit.shape}")
    if not np.isfinite(click_error_px) or click_error_px < 0:
        raise InputError("click_error_px", f"must be >= 0, got {click_error_px}")
    if float(protein_sign) not in (-1.0, 1.0):
        raise InputError("protein_sign", f"must be +1 or -1, got {protein_sign}")
    spacing_px = float(lattice_spacing_angstrom) / float(pixel_size_angstrom)
    margin = EDGE_MARGIN_FRACTION * spacing_px if edge_margin_px is None else float(edge_margin_px)
    v = float(protein_sign) * vol
    mask = ball_mask(0.5 * spacing_px)
    h = (mask.shape[0] - 1) // 2
    templates = [_template_cube(unit, r, h) for r in search_rotations()]
    score, _ = masked_ncc(v, templates, mask)
    xyz, scores = pick_peaks(score, NMS_FRACTION * spacing_px, -np.inf, margin)
    if len(xyz) == 0:
        raise InputError("average", "no unit found inside the box margin")
    xyz = xyz[scores >= min_score_fraction * scores.max()]
    c = np.full(3, vol.shape[0] // 2, np.float64)
    xyz = xyz[np.argsort(np.linalg.norm(xyz - c, axis=1), kind="stable")]
    if central_only:
        xyz = xyz[:1]
    else:
        xyz = xyz[lattice_connected(xyz, 0, spacing_px)]
        xyz = np.vstack(
            [xyz[:1], xyz[1:][np.argsort(np.linalg.norm(xyz[1:] - xyz[0], axis=1), kind="stable")]]
        )
    return xyz + 1.0 + _isotropic_errors(len(xyz), click_error_px, rng)


def write_clicks(
    path: str | os.PathLike, xyz_1based, pixel_size_angstrom: float, set_name: str
) -> None:
    """Write clicked markers as a ChimeraX ``.cmm`` file (atomically, via :func:`stasnake.io.cmm.write_cmm`).

    Parameters
    ----------
    path : str or PathLike
        Output file, e.g. ``reference_center.cmm`` or ``particle_centers.cmm``.
    xyz_1based : array_like
        (k, 3) 1-based pixels (x, y, z) of the map the markers were placed on.
    pixel_size_angstrom : float
        Pixel size of that map, Å (markers are stored in Å, map origin 0).
    set_name : str
        Name of the marker set.
    """
    xyz = np.atleast_2d(np.asarray(xyz_1based, np.float64))
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) == 0 or not np.all(np.isfinite(xyz)):
        raise InputError(
            path, f"markers must be a non-empty finite (k, 3) array, got shape {xyz.shape}"
        )
    px = float(pixel_size_angstrom)
    write_cmm(path, pixels_to_markers(xyz, px, radius_angstrom=1.5 * px), set_name=str(set_name))
