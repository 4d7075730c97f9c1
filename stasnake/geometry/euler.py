"""Rotation conventions: Dynamo ZXZ and RELION ZYZ Euler angles as matrices.

stasnake's rotation matrix ``R`` of a particle is *active* and maps the
reference (template) frame onto the particle in the tomogram frame, acting on
(x, y, z) column vectors in pixels::

    p_tomogram = R @ p_reference + particle_centre

so the columns of ``R`` are the particle's own x, y, z axes written in
tomogram coordinates. For Dynamo angles (tdrot, tilt, narot) in degrees the
particle's z axis is ``(sin tdrot sin tilt, cos tdrot sin tilt, cos tilt)``
(Dynamo wiki; geometry notes). Dynamo's and RELION's own matrices are the
passive ones (``R.T``): the eulerangles package encodes them as extrinsic zxz
(Dynamo) and intrinsic ZYZ (RELION) right-handed rotations, and the two are
equal when ``rot = narot - 90``, ``tilt = tilt``, ``psi = tdrot + 90``; this is
what the published dynamo2relion and relion2dynamo converters do.
"""

from __future__ import annotations

import numpy as np
from eulerangles import euler2matrix, matrix2euler


def _as_eulers(eulers_deg) -> tuple[np.ndarray, bool]:
    e = np.asarray(eulers_deg, dtype=np.float64)
    single = e.ndim == 1
    e = np.atleast_2d(e)
    if e.shape[-1] != 3:
        raise ValueError(f"Euler angles must have shape (3,) or (n, 3), got {np.shape(eulers_deg)}")
    return e, single


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
        on (x, y, z) column vectors.
    """
    e, single = _as_eulers(eulers_deg)
    passive = euler2matrix(e, axes="zxz", intrinsic=False, right_handed_rotation=True)
    active = np.swapaxes(passive, -1, -2)
    return active[0] if single else active


def matrix_to_dynamo_euler(matrices) -> np.ndarray:
    """Dynamo (tdrot, tilt, narot) in degrees from active matrices (inverse of the above)."""
    m = np.asarray(matrices, dtype=np.float64)
    single = m.ndim == 2
    passive = np.swapaxes(np.atleast_3d(m) if not single else m[None], -1, -2)
    e = matrix2euler(passive, axes="zxz", intrinsic=False, right_handed_rotation=True)
    e = np.atleast_2d(e)
    return e[0] if single else e


def relion_euler_to_matrix(eulers_deg) -> np.ndarray:
    """Active rotation matrices from RELION (rot, tilt, psi) in degrees (ZYZ)."""
    e, single = _as_eulers(eulers_deg)
    passive = euler2matrix(e, axes="zyz", intrinsic=True, right_handed_rotation=True)
    active = np.swapaxes(passive, -1, -2)
    return active[0] if single else active


def matrix_to_relion_euler(matrices) -> np.ndarray:
    """RELION (rot, tilt, psi) in degrees from active matrices."""
    m = np.asarray(matrices, dtype=np.float64)
    single = m.ndim == 2
    passive = np.swapaxes(m[None] if single else m, -1, -2)
    e = np.atleast_2d(matrix2euler(passive, axes="zyz", intrinsic=True, right_handed_rotation=True))
    return e[0] if single else e
