"""Euler conventions: round trips, gimbal cases, the z-axis formula, Dynamo/RELION source matrices."""

import numpy as np
import pytest
from eulerangles import convert_eulers

from stasnake.geometry.euler import (
    dynamo_euler_to_matrix,
    matrix_to_dynamo_euler,
    matrix_to_relion_euler,
    relion_euler_to_matrix,
)


def _dynamo_euler2matrix(tdrot, tilt, narot):
    """Transcription of Dynamo's dynamo_euler2matrix.m (as quoted in public ports)."""
    td, ti, na = np.radians([tdrot, tilt, narot])
    ctd, cti, cna = np.cos([td, ti, na])
    std, sti, sna = np.sin([td, ti, na])
    return np.array([
        [ctd * cna - std * cti * sna, -cna * std - ctd * cti * sna, sna * sti],
        [ctd * sna + cna * std * cti, ctd * cna * cti - std * sna, -cna * sti],
        [std * sti, ctd * sti, cti],
    ])  # fmt: skip


def _relion_euler_angles2matrix(rot, tilt, psi):
    """Transcription of RELION src/euler.cpp Euler_angles2matrix."""
    a, b, g = np.radians([rot, tilt, psi])
    ca, cb, cg = np.cos([a, b, g])
    sa, sb, sg = np.sin([a, b, g])
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array([
        [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
        [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
        [sc, ss, cb],
    ])  # fmt: skip


def _random_eulers(rng, n):
    e = rng.uniform(-180, 180, size=(n, 3))
    e[:, 1] = np.degrees(np.arccos(rng.uniform(-1, 1, n)))
    return e


def _angle_between_deg(a, b):
    """Rotation angle of a^T b in degrees, accurate near 0: ||a - b||_F = 2 sqrt(2) sin(angle / 2)."""
    d = np.linalg.norm(np.asarray(a) - np.asarray(b), axis=(-2, -1))
    return np.degrees(2 * np.arcsin(np.clip(d / (2 * np.sqrt(2)), 0, 1)))


def test_shapes_single_and_batch():
    e = np.array([30.0, 50.0, 70.0])
    assert dynamo_euler_to_matrix(e).shape == (3, 3)
    assert dynamo_euler_to_matrix(e[None]).shape == (1, 3, 3)
    assert relion_euler_to_matrix(e).shape == (3, 3)
    assert matrix_to_dynamo_euler(np.eye(3)).shape == (3,)
    assert matrix_to_dynamo_euler(np.eye(3)[None]).shape == (1, 3)
    assert matrix_to_relion_euler(np.stack([np.eye(3)] * 2)).shape == (2, 3)
    np.testing.assert_allclose(dynamo_euler_to_matrix(e), dynamo_euler_to_matrix(e[None])[0])


def test_dynamo_matrix_is_transpose_of_dynamo_euler2matrix():
    rng = np.random.default_rng(1)
    for e in _random_eulers(rng, 50):
        np.testing.assert_allclose(
            dynamo_euler_to_matrix(e), _dynamo_euler2matrix(*e).T, atol=1e-12
        )


def test_relion_matrix_equals_relion_euler_angles2matrix():
    rng = np.random.default_rng(2)
    for e in _random_eulers(rng, 50):
        np.testing.assert_allclose(
            relion_euler_to_matrix(e), _relion_euler_angles2matrix(*e), atol=1e-12
        )


def test_particle_z_axis_formula():
    rng = np.random.default_rng(3)
    e = _random_eulers(rng, 200)
    r = dynamo_euler_to_matrix(e)
    td, ti = np.radians(e[:, 0]), np.radians(e[:, 1])
    expected = np.stack([np.sin(td) * np.sin(ti), np.cos(td) * np.sin(ti), np.cos(ti)], axis=1)
    np.testing.assert_allclose(r[:, :, 2], expected, atol=1e-12)
    # narot spins the particle about its own z axis: the z axis does not depend on it
    e2 = e.copy()
    e2[:, 2] += 77.0
    np.testing.assert_allclose(dynamo_euler_to_matrix(e2)[:, :, 2], expected, atol=1e-12)


def test_matrices_are_proper_rotations():
    rng = np.random.default_rng(4)
    r = dynamo_euler_to_matrix(_random_eulers(rng, 100))
    np.testing.assert_allclose(
        r @ np.swapaxes(r, 1, 2), np.broadcast_to(np.eye(3), r.shape), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)


@pytest.mark.parametrize("to_m, from_m", [
    (dynamo_euler_to_matrix, matrix_to_dynamo_euler),
    (relion_euler_to_matrix, matrix_to_relion_euler),
])  # fmt: skip
def test_round_trip_random_and_gimbal(to_m, from_m):
    rng = np.random.default_rng(5)
    e = _random_eulers(rng, 500)
    gimbal = np.array([[30.0, 0.0, 40.0], [-120.0, 0.0, 10.0], [30.0, 180.0, 40.0], [75.0, 180.0, -60.0],
                       [0.0, 0.0, 0.0], [0.0, 1e-9, 0.0], [10.0, 179.9999999, 20.0]])  # fmt: skip
    e = np.vstack([e, gimbal])
    m = to_m(e)
    back = from_m(m)
    assert np.all(back[:, 1] >= -1e-9) and np.all(back[:, 1] <= 180 + 1e-9)
    assert _angle_between_deg(to_m(back), m).max() < 1e-6
    m2 = to_m(from_m(to_m(back)))
    np.testing.assert_allclose(
        m2, m, atol=1e-7
    )  # eulerangles snaps |sin tilt| < ~1e-8 to gimbal lock
    # away from gimbal lock the angles themselves come back (wrapped)
    ok = (e[:, 1] > 1e-3) & (e[:, 1] < 180 - 1e-3)
    d = (back[ok] - e[ok] + 180) % 360 - 180
    assert np.abs(d).max() < 1e-6


def test_relion_dynamo_equivalence():
    rng = np.random.default_rng(6)
    e = _random_eulers(rng, 500)
    r_eq = np.stack([e[:, 2] - 90, e[:, 1], e[:, 0] + 90], axis=1)
    assert _angle_between_deg(dynamo_euler_to_matrix(e), relion_euler_to_matrix(r_eq)).max() < 1e-6
    # and the eulerangles package (used by dynamo2relion / relion2dynamo) agrees
    conv = convert_eulers(e, source_meta="dynamo", target_meta="relion")
    assert _angle_between_deg(relion_euler_to_matrix(conv), dynamo_euler_to_matrix(e)).max() < 1e-6


def test_matrix_to_dynamo_euler_round_trip_on_the_equator_and_gimbal():
    """tilt = 90 exactly (VLP equator) and tilt 0/180 reproduce the matrix (eulerangles did not)."""
    rng = np.random.default_rng(7)
    eq = np.column_stack([rng.uniform(-180, 180, 500), np.full(500, 90.0), rng.uniform(-180, 180, 500)])
    gimbal = np.array([[40.0, 0.0, 30.0], [-75.0, 180.0, 10.0], [0.0, 0.0, 0.0]])
    matrices = dynamo_euler_to_matrix(np.concatenate([eq, gimbal]))
    back = dynamo_euler_to_matrix(matrix_to_dynamo_euler(matrices))
    assert np.abs(back - matrices).max() < 1e-12
