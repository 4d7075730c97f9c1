"""Rotation conventions: Dynamo ZXZ and RELION ZYZ Euler angles as matrices.

stasnake's rotation matrix ``R`` of a particle is *active* and maps the
reference (template) frame onto the particle in the tomogram frame, acting on
(x, y, z) column vectors in pixels::

    p_tomogram = R @ p_reference + particle_centre

so the columns of ``R`` are the particle's own x, y, z axes written in
tomogram coordinates. For Dynamo angles (tdrot, tilt, narot) in degrees the
particle's z axis is ``R[:, 2] = (sin tdrot sin tilt, cos tdrot sin tilt, cos tilt)``
(Dynamo wiki "Euler angles convention": tdrot about z, tilt about the new x,
narot about the new z, each clockwise, so narot never moves the z axis).

How the programs' own matrices relate to ``R`` (checked in
``tests/test_geometry_euler.py`` against transcriptions of their source):

* Dynamo ``dynamo_euler2matrix([tdrot, tilt, narot])`` returns ``R.T`` (its
  third *row* is the particle z axis).
* RELION ``Euler_angles2matrix(rot, tilt, psi)`` (src/euler.cpp, also
  ``Euler::anglesToMatrix3``) returns ``R`` itself: RELION maps particle space
  to tomogram space with it (``ParticleSet::getMatrix4x4``).
* The eulerangles package's 'dynamo' (extrinsic zxz) and 'relion'/'warp'
  (intrinsic ZYZ) matrices are both ``R.T``; they are equal when
  ``rot = narot - 90``, ``tilt = tilt``, ``psi = tdrot + 90`` (what the
  published dynamo2relion and relion2dynamo converters do).
"""

from __future__ import annotations

import numpy as np
from eulerangles import euler2matrix, matrix2euler


def _as_eulers(eulers_deg) -> tuple[np.ndarray, bool]:
    e = np.asarray(eulers_deg, dtype=np.float64)
    single = e.ndim == 1
    e = np.atleast_2d(e)
    if e.ndim != 2 or e.shape[-1] != 3:
        raise ValueError(f"Euler angles must have shape (3,) or (n, 3), got {np.shape(eulers_deg)}")
    return e, single


def _as_matrices(matrices) -> tuple[np.ndarray, bool]:
    m = np.asarray(matrices, dtype=np.float64)
    single = m.ndim == 2
    m = m.reshape(-1, 3, 3) if m.shape[-2:] == (3, 3) and m.ndim in (2, 3) else None
    if m is None:
        raise ValueError(
            f"rotation matrices must have shape (3, 3) or (n, 3, 3), got {np.shape(matrices)}"
        )
    return m, single


def _euler_to_active(eulers_deg, axes: str, intrinsic: bool) -> np.ndarray:
    e, single = _as_eulers(eulers_deg)
    # eulerangles returns (3, 3) for a single (1, 3) input: reshape before transposing
    passive = euler2matrix(e, axes=axes, intrinsic=intrinsic, right_handed_rotation=True).reshape(
        -1, 3, 3
    )
    active = np.swapaxes(passive, -1, -2)
    return active[0] if single else active


def _active_to_euler(matrices, axes: str, intrinsic: bool) -> np.ndarray:
    m, single = _as_matrices(matrices)
    passive = np.swapaxes(m, -1, -2)
    e = matrix2euler(passive, axes=axes, intrinsic=intrinsic, right_handed_rotation=True)
    e = np.asarray(e, dtype=np.float64).reshape(-1, 3)
    return e[0] if single else e


def dynamo_euler_to_matrix(eulers_deg) -> np.ndarray:
    """Active rotation matrices from Dynamo (tdrot, tilt, narot) in degrees.

    Parameters
    ----------
    eulers_deg : array_like
        Shape (3,) or (n, 3): tdrot, tilt, narot in degrees (ZXZ).

    Returns
    -------
    np.ndarray
        (3, 3) or (n, 3, 3) matrices ``R`` with ``p_tomogram = R @ p_reference``
        on (x, y, z) column vectors; ``R`` is the transpose of Dynamo's
        ``dynamo_euler2matrix``.
    """
    return _euler_to_active(eulers_deg, "zxz", intrinsic=False)


def matrix_to_dynamo_euler(matrices) -> np.ndarray:
    """Dynamo (tdrot, tilt, narot) in degrees from active matrices (inverse of the above).

    Parameters
    ----------
    matrices : array_like
        (3, 3) or (n, 3, 3) active rotation matrices.

    Returns
    -------
    np.ndarray
        (3,) or (n, 3) angles in degrees; tilt in [0, 180], tdrot and narot
        in (-180, 180]. At tilt 0 or 180 (gimbal lock) narot is set to 0 and
        tdrot carries the whole in-plane rotation; the matrix is reproduced.

    Notes
    -----
    Closed form from the columns and rows of ``R``: ``R[:, 2]`` is the
    particle z axis (sin tdrot sin tilt, cos tdrot sin tilt, cos tilt) and
    ``R[2, :]`` is (sin narot sin tilt, -cos narot sin tilt, cos tilt). The
    eulerangles package's generic inverse returned wrong angles for some
    matrices at tilt exactly 90 degrees (lattice points on a VLP's equator).
    """
    m, single = _as_matrices(matrices)
    cos_tilt = np.clip(m[:, 2, 2], -1.0, 1.0)
    tilt = np.degrees(np.arccos(cos_tilt))
    sin_tilt = np.hypot(m[:, 0, 2], m[:, 1, 2])
    regular = sin_tilt > 1e-9
    tdrot = np.where(regular, np.degrees(np.arctan2(m[:, 0, 2], m[:, 1, 2])), np.degrees(np.arctan2(-m[:, 1, 0], m[:, 0, 0])))
    narot = np.where(regular, np.degrees(np.arctan2(m[:, 2, 0], -m[:, 2, 1])), 0.0)
    e = np.column_stack([tdrot, tilt, narot])
    e[:, [0, 2]] = np.where(e[:, [0, 2]] <= -180.0, e[:, [0, 2]] + 360.0, e[:, [0, 2]])
    return e[0] if single else e


def relion_euler_to_matrix(eulers_deg) -> np.ndarray:
    """Active rotation matrices from RELION (rot, tilt, psi) in degrees (ZYZ).

    Parameters
    ----------
    eulers_deg : array_like
        Shape (3,) or (n, 3): rlnAngleRot, rlnAngleTilt, rlnAnglePsi in degrees.

    Returns
    -------
    np.ndarray
        (3, 3) or (n, 3, 3) matrices ``R``, equal to RELION's ``Euler_angles2matrix``.
    """
    return _euler_to_active(eulers_deg, "zyz", intrinsic=True)


def matrix_to_relion_euler(matrices) -> np.ndarray:
    """RELION (rot, tilt, psi) in degrees from active matrices.

    Parameters
    ----------
    matrices : array_like
        (3, 3) or (n, 3, 3) active rotation matrices.

    Returns
    -------
    np.ndarray
        (3,) or (n, 3) angles in degrees; tilt in [0, 180].
    """
    return _active_to_euler(matrices, "zyz", intrinsic=True)
