"""Dynamo table <-> RELION particle star blocks (pure DataFrame conversions, no file I/O).

Angles: ``R = dynamo_euler_to_matrix(tdrot, tilt, narot) = relion_euler_to_matrix(rot, tilt, psi)``
(``rot = narot - 90``, ``psi = tdrot + 90``), computed through the same eulerangles
path as the dynamo2relion / relion2dynamo converters, so the angles agree to
round-off.

Positions (see docs/conventions.md):

* RELION 3.1/4 ``rlnCoordinate{X,Y,Z}`` (pixels): by default
  (``match_public_converters=True``) ``rlnCoordinateX = (x + dx) * binning`` exactly as
  dynamo2relion writes it and as the real 4_1.star/4_1.tbl pair shows; with
  ``False`` RELION's own 0-based pixel convention is used
  (``rlnCoordinateX = (x + dx - 1) * binning``). Shifts are folded into the
  coordinates and ``rlnOrigin{X,Y,Z}Angst`` are written as 0.
* RELION 5 ``rlnCenteredCoordinate{X,Y,Z}Angst = (p - size/2) * pixel_size`` with
  ``p = (x + dx - 1) * binning`` RELION's 0-based unbinned pixel position; needs
  the unbinned tomogram sizes.
* Reading: the particle centre is ``coordinate - origin_angst / pixel_size``
  (RELION ``ParticleSet::getPosition``; with ``rlnTomoSubtomogram{Rot,Tilt,Psi}``
  the origin is rotated by the subtomogram matrix and the pose is
  ``A_subtomogram @ A_particle``). The table gets that centre in x, y, z and
  zero shifts, like relion2dynamo.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.geometry.coordinates import (
    RELION_PIXEL_FROM_TABLE,
    from_relion5_centered_angstrom,
)
from stasnake.geometry.euler import (
    dynamo_euler_to_matrix,
    matrix_to_dynamo_euler,
    matrix_to_relion_euler,
    relion_euler_to_matrix,
)
from stasnake.io.dynamo_table import new_table
from stasnake.sta.tables import half_set

_XYZ = ("X", "Y", "Z")


def dynamo_to_relion_eulers(eulers_deg) -> np.ndarray:
    """RELION (rot, tilt, psi) from Dynamo (tdrot, tilt, narot), degrees, shape (n, 3) or (3,)."""
    return matrix_to_relion_euler(dynamo_euler_to_matrix(eulers_deg))


def relion_to_dynamo_eulers(eulers_deg) -> np.ndarray:
    """Dynamo (tdrot, tilt, narot) from RELION (rot, tilt, psi), degrees, shape (n, 3) or (3,)."""
    return matrix_to_dynamo_euler(relion_euler_to_matrix(eulers_deg))


def table_to_relion_particles(
    table: pd.DataFrame,
    tomo_names: dict[int, str],
    pixel_size_angstrom: float,
    version: int = 5,
    tomogram_sizes_xyz: dict[str, tuple] | None = None,
    binning: float = 1.0,
    half_sets: bool = False,
    match_public_converters: bool = True,
) -> dict[str, pd.DataFrame]:
    """RELION particle star blocks from a Dynamo table.

    Parameters
    ----------
    table : pd.DataFrame
        Dynamo table (columns as in ``stasnake.io.dynamo_table.COLUMNS``; needs
        tag, dx dy dz, tdrot tilt narot, tomo, x y z; reg is optional).
    tomo_names : dict of int to str
        Table ``tomo`` number -> ``rlnTomoName``.
    pixel_size_angstrom : float
        Unbinned tilt-series pixel size in Å (``rlnTomoTiltSeriesPixelSize``).
    version : {4, 5}
        4: ``rlnCoordinate{X,Y,Z}`` in unbinned pixels; 5: ``rlnCenteredCoordinate{X,Y,Z}Angst``.
    tomogram_sizes_xyz : dict of str to tuple, optional
        ``rlnTomoName`` -> unbinned (nx, ny, nz) in pixels; required for version 5.
    binning : float
        Table coordinates are in pixels binned by this factor.
    half_sets : bool
        Add ``rlnRandomSubset = tag % 2 + 1`` (even tags 1, odd tags 2).
    match_public_converters : bool
        Version 4 only: True writes ``(x + dx) * binning`` like dynamo2relion;
        False writes RELION's 0-based ``(x + dx - 1) * binning``.

    Returns
    -------
    dict of str to pd.DataFrame
        ``{"optics": ..., "particles": ...}`` ready for ``starfile.write``.
        Particles carry rlnTomoName, rlnTomoParticleName (``name/tag``),
        coordinates, rlnOrigin{X,Y,Z}Angst (0), rlnAngleRot/Tilt/Psi,
        rlnObjectNumber (= reg), rlnOpticsGroup (1) and optionally rlnRandomSubset.
    """
    if version not in (4, 5):
        raise ValueError(f"version must be 4 or 5, got {version!r}")
    needed = ["tag", "dx", "dy", "dz", "tdrot", "tilt", "narot", "tomo", "x", "y", "z"]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise InputError("<table>", f"missing Dynamo table columns: {', '.join(missing)}")
    tomos = table["tomo"].to_numpy().astype(np.int64)
    unknown = sorted(set(tomos.tolist()) - set(tomo_names))
    if unknown:
        raise InputError("tomo_names", f"no tomogram name for table tomo number(s) {unknown}")
    names = np.array([tomo_names[t] for t in tomos], dtype=object)
    centre = table[["x", "y", "z"]].to_numpy(np.float64) + table[["dx", "dy", "dz"]].to_numpy(
        np.float64
    )
    n = len(table)
    parts: dict[str, object] = {"rlnTomoName": names}
    tags = table["tag"].to_numpy().astype(np.int64)
    parts["rlnTomoParticleName"] = np.array(
        [f"{nm}/{t}" for nm, t in zip(names, tags, strict=True)], dtype=object
    )
    if version == 4:
        offset = 0.0 if match_public_converters else RELION_PIXEL_FROM_TABLE
        pix = (centre + offset) * float(binning)
        for i, a in enumerate(_XYZ):
            parts[f"rlnCoordinate{a}"] = pix[:, i]
    else:
        if tomogram_sizes_xyz is None:
            raise InputError(
                "tomogram_sizes_xyz",
                "RELION 5 centred coordinates need the unbinned tomogram sizes",
            )
        lacking = sorted(set(names.tolist()) - set(tomogram_sizes_xyz))
        if lacking:
            raise InputError("tomogram_sizes_xyz", f"no size for tomogram(s) {lacking}")
        size = np.array([tomogram_sizes_xyz[nm] for nm in names], dtype=np.float64).reshape(n, 3)
        pix = (centre + RELION_PIXEL_FROM_TABLE) * float(binning)
        ang = (pix - size / 2.0) * float(pixel_size_angstrom)
        for i, a in enumerate(_XYZ):
            parts[f"rlnCenteredCoordinate{a}Angst"] = ang[:, i]
    for a in _XYZ:
        parts[f"rlnOrigin{a}Angst"] = np.zeros(n)
    eul = dynamo_to_relion_eulers(table[["tdrot", "tilt", "narot"]].to_numpy(np.float64)).reshape(
        n, 3
    )
    parts["rlnAngleRot"], parts["rlnAngleTilt"], parts["rlnAnglePsi"] = (
        eul[:, 0],
        eul[:, 1],
        eul[:, 2],
    )
    if "reg" in table.columns:
        parts["rlnObjectNumber"] = table["reg"].to_numpy().astype(np.int64)
    parts["rlnOpticsGroup"] = np.ones(n, dtype=np.int64)
    if half_sets:
        parts["rlnRandomSubset"] = half_set(tags)
    optics = pd.DataFrame(
        {"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"],
         "rlnTomoTiltSeriesPixelSize": [float(pixel_size_angstrom)]}
    )  # fmt: skip
    return {"optics": optics, "particles": pd.DataFrame(parts)}


def _tomo_number_map(names: list[str]) -> dict[str, int]:
    """relion2dynamo's rule (second '_' field, e.g. TS_01 -> 1), else 1..n in sorted order."""
    numbers = {}
    for nm in names:
        fields = str(nm).split("_")
        if len(fields) < 2 or not re.fullmatch(r"\d+", fields[1]):
            break
        numbers[nm] = int(fields[1])
    else:
        if len(set(numbers.values())) == len(numbers):
            return numbers
    return {nm: i + 1 for i, nm in enumerate(sorted(names))}


def _pixel_size(
    particles: pd.DataFrame, optics: pd.DataFrame | None, source: str
) -> np.ndarray | None:
    """Per-particle pixel size (Å) of the coordinates, from the particles or the optics block.

    RELION 4/5 tomography files give rlnTomoTiltSeriesPixelSize; RELION 3.1 and
    Warp files give the coordinates' pixel size as rlnMicrographPixelSize, or
    only as rlnImagePixelSize (optics) / rlnPixelSize (particles), in that
    order of preference. Returns None when none is present.
    """
    for col in _PIXEL_SIZE_COLUMNS:
        if col in particles.columns:
            return particles[col].to_numpy(np.float64)
        if optics is None or col not in optics.columns:
            continue
        if "rlnOpticsGroup" in particles.columns and "rlnOpticsGroup" in optics.columns:
            lut = dict(
                zip(optics["rlnOpticsGroup"].astype(int), optics[col].astype(float), strict=True)
            )
            groups = particles["rlnOpticsGroup"].astype(int).tolist()
            lacking = sorted(set(groups) - set(lut))
            if lacking:
                raise InputError(source, f"optics group(s) {lacking} are not in the optics block")
            return np.array([lut[g] for g in groups], dtype=np.float64)
        return np.full(len(particles), float(optics[col].iloc[0]))
    return None


_PIXEL_SIZE_COLUMNS = (
    "rlnTomoTiltSeriesPixelSize",
    "rlnMicrographPixelSize",
    "rlnImagePixelSize",
    "rlnPixelSize",
)


def relion_particles_to_table(
    particles: pd.DataFrame,
    optics: pd.DataFrame | None,
    tomo_numbers: dict[str, int] | None = None,
    tomogram_sizes_xyz: dict[str, tuple] | None = None,
    match_public_converters: bool = True,
    source: str = "<star>",
) -> tuple[pd.DataFrame, dict[int, str]]:
    """Dynamo table from a RELION 3.0/3.1/4/5 or Warp particle block.

    Parameters
    ----------
    particles : pd.DataFrame
        The particles block. Positions from ``rlnCenteredCoordinate{X,Y,Z}Angst``
        (RELION 5) or ``rlnCoordinate{X,Y,Z}`` (pixels); origins from
        ``rlnOrigin{X,Y,Z}Angst`` (divided by rlnTomoTiltSeriesPixelSize) or
        ``rlnOrigin{X,Y,Z}`` (pixels); tomogram from ``rlnTomoName`` or
        ``rlnMicrographName`` (Warp / RELION 3.0).
    optics : pd.DataFrame or None
        The optics block (for rlnTomoTiltSeriesPixelSize), if any.
    tomo_numbers : dict of str to int, optional
        Tomogram name -> table tomo number. Default: relion2dynamo's rule (the
        integer after the first '_', e.g. Position_86_4 -> 86, TS_01 -> 1) when
        it gives every name its own number, otherwise 1..n in sorted name order.
    tomogram_sizes_xyz : dict of str to tuple, optional
        Unbinned (nx, ny, nz) per tomogram name; required for RELION 5 centred coordinates.
    match_public_converters : bool
        For ``rlnCoordinate``: True gives ``x = rlnCoordinateX`` (relion2dynamo);
        False gives ``x = rlnCoordinateX + 1`` (RELION's 0-based pixels to 1-based).
    source : str
        Name of the star file, used in error messages.

    Returns
    -------
    table : pd.DataFrame
        Dynamo table; the particle centre goes to x, y, z (shifts 0); tags 1..n;
        reg from rlnObjectNumber, class from rlnClassNumber, apix from the pixel size.
    tomo_map : dict of int to str
        Table tomo number -> tomogram name (if ``tomo_numbers`` gives several
        names one number, the first name in sorted order).

    Raises
    ------
    InputError
        A missing column (named), a missing pixel size or tomogram size.
    """
    cols = particles.columns
    if "rlnTomoName" in cols:
        name_col = "rlnTomoName"
    elif "rlnMicrographName" in cols:
        name_col = "rlnMicrographName"
    else:
        raise InputError(source, "particles block has no rlnTomoName (or rlnMicrographName) column")
    names = particles[name_col].astype(str).tolist()
    n = len(particles)
    apix = _pixel_size(particles, optics, source)
    centred = [f"rlnCenteredCoordinate{a}Angst" for a in _XYZ]
    plain = [f"rlnCoordinate{a}" for a in _XYZ]
    if all(c in cols for c in centred):
        if apix is None:
            raise InputError(
                source,
                "rlnCenteredCoordinate*Angst needs rlnTomoTiltSeriesPixelSize (optics block)",
            )
        if tomogram_sizes_xyz is None:
            raise InputError(
                source,
                "rlnCenteredCoordinate*Angst needs the tomogram sizes (rlnTomoSizeX/Y/Z of tomograms.star)",
            )
        lacking = sorted(set(names) - set(tomogram_sizes_xyz))
        if lacking:
            raise InputError(source, f"no tomogram size for {lacking}")
        size = np.array([tomogram_sizes_xyz[nm] for nm in names], dtype=np.float64).reshape(n, 3)
        xyz = from_relion5_centered_angstrom(
            particles[centred].to_numpy(np.float64) / apix[:, None], size, 1.0
        )
    elif all(c in cols for c in plain):
        offset = 0.0 if match_public_converters else -RELION_PIXEL_FROM_TABLE
        xyz = particles[plain].to_numpy(np.float64) + offset
    else:
        missing = [c for c in plain if c not in cols]
        raise InputError(
            source,
            f"particles block has neither rlnCenteredCoordinate{{X,Y,Z}}Angst nor {', '.join(missing)}",
        )
    # origins (particle centre = coordinate - origin)
    origin_px = np.zeros((n, 3))
    angst = [f"rlnOrigin{a}Angst" for a in _XYZ]
    pixels = [f"rlnOrigin{a}" for a in _XYZ]
    if any(c in cols for c in angst):
        if apix is None:
            raise InputError(
                source,
                "rlnOrigin*Angst needs a pixel size (rlnTomoTiltSeriesPixelSize, "
                "rlnMicrographPixelSize, rlnImagePixelSize or rlnPixelSize) in the optics or particles block",
            )
        origin_px = np.stack(
            [particles[c].to_numpy(np.float64) if c in cols else np.zeros(n) for c in angst], axis=1
        )
        origin_px = origin_px / apix[:, None]
    elif any(c in cols for c in pixels):
        origin_px = np.stack(
            [particles[c].to_numpy(np.float64) if c in cols else np.zeros(n) for c in pixels],
            axis=1,
        )
    angle_cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    present = [c for c in angle_cols if c in cols]
    if present and len(present) < 3:
        raise InputError(
            source,
            f"particles block has {', '.join(present)} but not {', '.join(c for c in angle_cols if c not in cols)}",
        )
    rot = (
        relion_euler_to_matrix(particles[angle_cols].to_numpy(np.float64)).reshape(n, 3, 3)
        if present
        else np.broadcast_to(np.eye(3), (n, 3, 3))
    )
    sub_cols = ["rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi"]
    if all(c in cols for c in sub_cols):
        a_sub = relion_euler_to_matrix(particles[sub_cols].to_numpy(np.float64)).reshape(n, 3, 3)
        rot = a_sub @ rot
        origin_px = np.einsum("nij,nj->ni", a_sub, origin_px)
    xyz = xyz - origin_px
    if tomo_numbers is None:
        tomo_numbers = _tomo_number_map(sorted(set(names)))
    lacking = sorted(set(names) - set(tomo_numbers))
    if lacking:
        raise InputError(source, f"no tomo number given for tomogram(s) {lacking}")
    columns: dict[str, object] = {
        "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
        "tomo": np.array([tomo_numbers[nm] for nm in names], dtype=np.int64),
    }  # fmt: skip
    if present:
        eul = matrix_to_dynamo_euler(rot).reshape(n, 3)
        columns.update(tdrot=eul[:, 0], tilt=eul[:, 1], narot=eul[:, 2])
    if "rlnObjectNumber" in cols:
        columns["reg"] = particles["rlnObjectNumber"].to_numpy().astype(np.int64)
    if "rlnClassNumber" in cols:
        columns["class"] = particles["rlnClassNumber"].to_numpy().astype(np.int64)
    if apix is not None:
        columns["apix"] = apix
    table = new_table(n, **columns)
    tomo_map: dict[int, str] = {}
    for nm in sorted(set(names)):  # names sharing a number: the first in sorted order
        tomo_map.setdefault(int(tomo_numbers[nm]), nm)
    return table, tomo_map


def relion_tomograms_table(
    tomogram_sizes_xyz: dict[str, tuple[int, int, int]],
    pixel_size_angstrom: float,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    hand: int = -1,
    tomogram_paths: dict[str, str] | None = None,
) -> pd.DataFrame:
    """The ``global`` block of a RELION 5 ``tomograms.star``.

    Parameters
    ----------
    tomogram_sizes_xyz : dict
        Tomogram name -> full-size tomogram size (x, y, z) in pixels.
    pixel_size_angstrom : float
        Pixel size of the tilt series and of the full-size tomogram (binning 1), Å.
    voltage_kv, cs_mm, amplitude_contrast : float
        Optics (kV, mm, fraction).
    hand : int
        ``rlnTomoHand``. stasnake's defocus convention (defocus decreases
        toward the electron source, +Z; the IMOD/ctfphaseflip sign) is RELION's
        hand -1, as used for EMPIAR-10164 (docs/conventions.md).
    tomogram_paths : dict, optional
        Tomogram name -> reconstructed tomogram file (``rlnTomoReconstructedTomogram``).

    Returns
    -------
    pd.DataFrame
        One row per tomogram, RELION 5 column names.
    """
    names = list(tomogram_sizes_xyz)
    sizes = np.array([tomogram_sizes_xyz[n] for n in names], dtype=int).reshape(-1, 3)
    table = pd.DataFrame(
        {
            "rlnTomoName": names,
            "rlnVoltage": float(voltage_kv),
            "rlnSphericalAberration": float(cs_mm),
            "rlnAmplitudeContrast": float(amplitude_contrast),
            "rlnMicrographOriginalPixelSize": float(pixel_size_angstrom),
            "rlnTomoHand": int(hand),
            "rlnTomoTiltSeriesPixelSize": float(pixel_size_angstrom),
            "rlnTomoTomogramBinning": 1.0,
            "rlnTomoSizeX": sizes[:, 0],
            "rlnTomoSizeY": sizes[:, 1],
            "rlnTomoSizeZ": sizes[:, 2],
        }
    )
    if tomogram_paths:
        table["rlnTomoReconstructedTomogram"] = [tomogram_paths[n] for n in names]
    return table
