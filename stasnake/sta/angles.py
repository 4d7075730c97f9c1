"""Orientation sets of one alignment step with Dynamo's angular-scan semantics.

Specification: ``docs/alignment-projects.md`` (sources cited there).

Conventions (``stasnake.geometry.euler``): a pose ``R`` is an *active*
rotation mapping the reference onto the particle, ``p_tomogram = R @ p_reference``
on (x, y, z) column vectors; Dynamo Euler angles (tdrot, tilt, narot) are ZXZ
with each elementary rotation clockwise, so ``dynamo_euler_to_matrix((0, 0, a))``
is a rotation by ``-a`` about z in the right-handed sense.

A scan is *local*: it is built in the particle's own frame around its current
pose ``R0`` (Dynamo's "old angles") and every candidate is ``R0 @ D`` with

    D(phi, theta, delta) = dynamo_euler_to_matrix((phi, theta, delta - phi))

* ``(phi, theta)`` is a cone direction: the candidate's z axis, written in the
  particle frame, is ``(sin phi sin theta, cos phi sin theta, cos theta)``
  (Dynamo's tdrot/tilt formula); ``theta`` runs over rings ``0, cs, 2 cs, ...``
  up to half the cone aperture (``cone_range / 2``; 360 is the full sphere).
* ``Ez(phi) Ex(theta) Ez(-phi)`` is the smallest rotation taking z to that
  direction, so ``delta`` is a change of narot measured from the current
  in-plane angle carried along that shortest path (see the doc for how this
  relates to Dynamo's own seed).
* ``delta`` runs over the in-plane offsets, symmetric about 0.

The first candidate is always ``R0`` itself (``theta = 0``, ``delta = 0``).
All angles are degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from stasnake.errors import InputError
from stasnake.geometry.euler import dynamo_euler_to_matrix

_TOL = 1e-9
_FLIP = dynamo_euler_to_matrix((0.0, 180.0, 0.0))  # 180 deg about the particle x axis


def _ring_count(theta_deg: float, sampling_deg: float) -> int:
    """Directions on the ring at polar angle ``theta``: adjacent ones ``<= sampling`` apart."""
    s = math.sin(math.radians(theta_deg))
    if s < 1e-9:
        return 1  # a pole
    c = math.cos(math.radians(theta_deg))
    ratio = (math.cos(math.radians(sampling_deg)) - c * c) / (s * s)
    step = math.degrees(math.acos(min(1.0, max(-1.0, ratio))))  # azimuth step, great-circle = cs
    if step <= 0.0:
        return 1
    return max(1, math.ceil(360.0 / step - 1e-6))


def cone_direction_angles(cone_range_deg: float, cone_sampling_deg: float) -> np.ndarray:
    """Cone directions as (azimuth ``phi``, polar ``theta``) pairs, Dynamo-style rings.

    Parameters
    ----------
    cone_range_deg : float
        Full aperture of the cone in degrees (0..360; 360 = the whole sphere).
    cone_sampling_deg : float
        Step in degrees, both between rings and between neighbours on a ring.

    Returns
    -------
    np.ndarray
        (n, 2) float64 ``(phi, theta)`` in degrees, ``phi`` measured like
        Dynamo's tdrot (from +y toward +x). Row 0 is the axis (0, 0).

    Notes
    -----
    Rings sit at ``theta = i * cs`` for ``i = 0, 1, ...`` while
    ``theta < cone_range/2 + cs/2`` (the edge ring is rounded to the nearest
    multiple of ``cs``, capped at 180). Ring ``i`` holds ``ceil(360 / dphi)``
    directions at ``phi = k * 360 / n_i`` where ``dphi`` is the azimuth step
    whose great-circle chord equals ``cs``:
    ``cos dphi = (cos cs - cos^2 theta) / sin^2 theta``.
    """
    _check_range("cone_range", cone_range_deg)
    _check_sampling("cone_sampling", cone_sampling_deg)
    half = min(180.0, cone_range_deg / 2.0)
    n_rings = int(math.floor(half / cone_sampling_deg + 0.5 - _TOL)) + 1
    rows = []
    for i in range(n_rings):
        theta = min(180.0, i * cone_sampling_deg)
        n = _ring_count(theta, cone_sampling_deg)
        rows.extend((k * 360.0 / n, theta) for k in range(n))
        if theta >= 180.0:
            break
    return np.asarray(rows, dtype=np.float64)


def cone_directions(cone_range_deg: float, cone_sampling_deg: float) -> np.ndarray:
    """Unit vectors of the cone directions around +z (see :func:`cone_direction_angles`).

    Parameters
    ----------
    cone_range_deg, cone_sampling_deg : float
        Dynamo ``cone_range`` (full aperture, degrees) and ``cone_sampling`` (degrees).

    Returns
    -------
    np.ndarray
        (n, 3) float64 unit (x, y, z) vectors in the particle frame; row 0 is +z.
    """
    a = np.radians(cone_direction_angles(cone_range_deg, cone_sampling_deg))
    phi, theta = a[:, 0], a[:, 1]
    return np.column_stack([np.sin(phi) * np.sin(theta), np.cos(phi) * np.sin(theta), np.cos(theta)])


def inplane_offsets(inplane_range_deg: float, inplane_sampling_deg: float,
                    symmetry_order: int = 1, flip: bool = False) -> np.ndarray:
    """Narot offsets of one scan, symmetric about the current in-plane angle.

    Parameters
    ----------
    inplane_range_deg : float
        Full width of the scanned interval in degrees (0..360). 0, or a range
        not larger than the sampling, scans no in-plane rotation.
    inplane_sampling_deg : float
        Step in degrees.
    symmetry_order : int
        N of a Cn reference. When the range is global (360) the scan covers
        only ``360 / N`` (the other in-plane angles are symmetry copies).
    flip : bool
        Add the offsets turned by 180 degrees (Dynamo ``inplane_flip``).

    Returns
    -------
    np.ndarray
        (m,) float64 offsets in degrees in (-180, 180]; element 0 is 0.
        Offsets are ``k * is`` for ``|k * is| < range/2 + is/2``; a global
        range gives ``k * is`` over one period ``360 / N`` without repeating
        an angle.
    """
    _check_range("inplane_range", inplane_range_deg)
    _check_sampling("inplane_sampling", inplane_sampling_deg)
    n_sym = _check_symmetry(symmetry_order)
    step = inplane_sampling_deg
    if inplane_range_deg >= 360.0 - _TOL:
        period = 360.0 / n_sym
        n = max(1, math.ceil(period / step - 1e-6))
        ks = [k - n if k * step > period / 2.0 + _TOL else k for k in range(n)]
    else:
        k_max = int(math.floor(inplane_range_deg / 2.0 / step + 0.5 - _TOL))
        ks = [0] + [s * k for k in range(1, k_max + 1) for s in (1, -1)]
    offsets = [k * step for k in ks]
    if flip:
        offsets += [o + 180.0 for o in offsets]
    return _unique_angles(offsets)


def _unique_angles(angles_deg) -> np.ndarray:
    out: list[float] = []
    for a in angles_deg:
        w = -((-a + 180.0) % 360.0) + 180.0  # wrap into (-180, 180]
        if not any(abs(((w - b + 180.0) % 360.0) - 180.0) < 1e-6 for b in out):
            out.append(w)
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True)
class AngularScan:
    """The angular parameters of one Dynamo alignment round (or refinement level).

    Parameters
    ----------
    cone_range_deg : float
        Dynamo ``cone_range`` (``cr``): full cone aperture in degrees, 0..360.
    cone_sampling_deg : float
        Dynamo ``cone_sampling`` (``cs``), degrees, > 0.
    inplane_range_deg : float
        Dynamo ``inplane_range`` (``ir``): full width of the narot interval, 0..360.
    inplane_sampling_deg : float
        Dynamo ``inplane_sampling`` (``is``), degrees, > 0.
    symmetry_order : int
        N of the round's Cn symmetry (``sym`` ``cN``); restricts a global in-plane scan.
    cone_flip, inplane_flip : int
        Dynamo flip modes: 0 none, 1 coarsest level only, 2 all refinement levels.
    where : str
        Prefix for error messages (e.g. ``"project.yaml: rounds[1]."``).

    Raises
    ------
    InputError
        Naming the parameter key for a negative or too large range, a sampling
        that is not positive and finite, a symmetry order < 1 or a bad flip mode.
    """

    cone_range_deg: float
    cone_sampling_deg: float
    inplane_range_deg: float
    inplane_sampling_deg: float
    symmetry_order: int = 1
    cone_flip: int = 0
    inplane_flip: int = 0
    where: str = field(default="", compare=False, repr=False)

    def __post_init__(self):
        w = self.where
        _check_range(w + "cone_range", self.cone_range_deg)
        _check_sampling(w + "cone_sampling", self.cone_sampling_deg)
        _check_range(w + "inplane_range", self.inplane_range_deg)
        _check_sampling(w + "inplane_sampling", self.inplane_sampling_deg)
        _check_symmetry(self.symmetry_order, w + "sym")
        for key in ("cone_flip", "inplane_flip"):
            if getattr(self, key) not in (0, 1, 2):
                raise InputError(w + key, f"must be 0, 1 or 2, not {getattr(self, key)!r}")

    def relative(self) -> np.ndarray:
        """Candidates ``D`` in the particle frame, (n, 3, 3); ``D[0]`` is the identity."""
        dirs = cone_direction_angles(self.cone_range_deg, self.cone_sampling_deg)
        offs = inplane_offsets(self.inplane_range_deg, self.inplane_sampling_deg,
                               self.symmetry_order, bool(self.inplane_flip))
        phi = np.repeat(dirs[:, 0], offs.size)
        theta = np.repeat(dirs[:, 1], offs.size)
        delta = np.tile(offs, len(dirs))
        d = dynamo_euler_to_matrix(np.column_stack([phi, theta, delta - phi])).reshape(-1, 3, 3)
        if self.cone_flip:
            d = np.concatenate([d, _FLIP @ d])
        return _unique_matrices(d)

    def around(self, current_matrix) -> np.ndarray:
        """Candidates ``R0 @ D`` around the pose ``current_matrix`` (``R0``), (n, 3, 3)."""
        return _as_rotation(current_matrix) @ self.relative()

    def refined(self, level: int, refine_factor: float) -> AngularScan:
        """The scan of refinement level ``level`` (Dynamo multilevel refinement).

        Each level halves the samplings of the previous one and scans a range
        of ``refine_factor`` times the previous sampling:
        ``cs[l] = cs[l-1] / 2``, ``cr[l] = refine_factor * cs[l-1]`` (same for
        the in-plane pair). A dimension the base scan does not explore (a
        single cone direction or in-plane angle) stays unexplored. Flip mode 1
        is dropped after the base level, mode 2 is kept.

        Parameters
        ----------
        level : int
            Refinement level, 0 (the base scan itself) .. ``refine``.
        refine_factor : float
            Dynamo ``refine_factor`` (``rff``), > 0.

        Returns
        -------
        AngularScan
        """
        if not (isinstance(level, (int, np.integer)) and level >= 0):
            raise InputError(self.where + "refine", f"must be an integer >= 0, not {level!r}")
        if not (np.isfinite(refine_factor) and refine_factor > 0):
            raise InputError(self.where + "refine_factor", f"must be > 0, not {refine_factor!r}")
        scan = self
        cone_on = len(cone_direction_angles(self.cone_range_deg, self.cone_sampling_deg)) > 1
        inplane_on = len(inplane_offsets(self.inplane_range_deg, self.inplane_sampling_deg,
                                         self.symmetry_order)) > 1
        for _ in range(level):
            cs, is_ = scan.cone_sampling_deg, scan.inplane_sampling_deg
            scan = replace(
                scan,
                cone_range_deg=min(360.0, refine_factor * cs) if cone_on else 0.0,
                cone_sampling_deg=cs / 2.0,
                inplane_range_deg=min(360.0, refine_factor * is_) if inplane_on else 0.0,
                inplane_sampling_deg=is_ / 2.0,
                cone_flip=2 if self.cone_flip == 2 else 0,
                inplane_flip=2 if self.inplane_flip == 2 else 0,
            )
        return scan


def orientation_set(current_matrix, cone_range_deg: float, cone_sampling_deg: float,
                    inplane_range_deg: float, inplane_sampling_deg: float,
                    symmetry_order: int = 1, cone_flip: int = 0,
                    inplane_flip: int = 0) -> np.ndarray:
    """Candidate poses of one base-level scan around a particle's current pose.

    Parameters
    ----------
    current_matrix : array_like
        (3, 3) current active pose ``R0`` (reference -> tomogram), e.g.
        ``dynamo_euler_to_matrix(table[["tdrot", "tilt", "narot"]])``.
    cone_range_deg, cone_sampling_deg, inplane_range_deg, inplane_sampling_deg : float
        Dynamo ``cone_range``, ``cone_sampling``, ``inplane_range``,
        ``inplane_sampling`` in degrees.
    symmetry_order : int
        N of the Cn reference (restricts a global in-plane scan to 360/N).
    cone_flip, inplane_flip : int
        Dynamo flip modes (0 none; 1 and 2 both flip the base level).

    Returns
    -------
    np.ndarray
        (n, 3, 3) float64 active matrices; element 0 equals ``R0``.
    """
    scan = AngularScan(cone_range_deg, cone_sampling_deg, inplane_range_deg,
                       inplane_sampling_deg, symmetry_order, cone_flip, inplane_flip)
    return scan.around(current_matrix)


def refined_orientation_set(best_matrix, scan: AngularScan, level: int,
                            refine_factor: float) -> np.ndarray:
    """Candidate poses of refinement level ``level`` centred on the best pose so far.

    Parameters
    ----------
    best_matrix : array_like
        (3, 3) active pose found best by the previous level.
    scan : AngularScan
        The base scan of the round.
    level : int
        1 .. ``refine`` (0 gives the base scan).
    refine_factor : float
        Dynamo ``refine_factor``.

    Returns
    -------
    np.ndarray
        (n, 3, 3) float64 matrices, element 0 equals ``best_matrix``; steps are
        ``cs / 2**level`` and ``is / 2**level``.
    """
    return scan.refined(level, refine_factor).around(best_matrix)


def rotation_distance_deg(a, b) -> np.ndarray:
    """Geodesic angle in degrees between rotations ``a`` and ``b`` (broadcasting).

    Parameters
    ----------
    a, b : array_like
        (..., 3, 3) rotation matrices.

    Returns
    -------
    np.ndarray
        (...) angle of ``a.T @ b`` in degrees, 0..180.
    """
    tr = np.einsum("...ji,...ji->...", np.asarray(a, float), np.asarray(b, float))
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def _unique_matrices(m: np.ndarray) -> np.ndarray:
    keys = np.round(m.reshape(len(m), 9), 6) + 0.0  # + 0.0 turns -0.0 into 0.0
    _, first = np.unique(keys, axis=0, return_index=True)
    return m[np.sort(first)]


def _as_rotation(matrix) -> np.ndarray:
    r = np.asarray(matrix, dtype=np.float64)
    if r.shape != (3, 3) or not np.allclose(r.T @ r, np.eye(3), atol=1e-6) \
            or np.linalg.det(r) < 0:
        raise InputError("current_matrix", "must be a (3, 3) rotation matrix (orthonormal, det +1)")
    return r


def _check_range(key: str, value) -> None:
    if not (isinstance(value, (int, float, np.number)) and np.isfinite(value)
            and 0.0 <= value <= 360.0):
        raise InputError(key, f"must be a number of degrees from 0 to 360, not {value!r}")


def _check_sampling(key: str, value) -> None:
    if not (isinstance(value, (int, float, np.number)) and np.isfinite(value)
            and 0.0 < value <= 360.0):
        raise InputError(key, f"must be a positive number of degrees (at most 360), not {value!r}")


def _check_symmetry(order, key: str = "sym") -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)) or order < 1:
        raise InputError(key, f"symmetry order must be an integer >= 1 (c1, c6...), not {order!r}")
    return int(order)
