"""Orientation sets with Dynamo's angular-scan semantics (stasnake.sta.angles)."""

import numpy as np
import pytest

from stasnake.errors import InputError
from stasnake.geometry.euler import dynamo_euler_to_matrix, matrix_to_dynamo_euler
from stasnake.sta.angles import (
    AngularScan,
    cone_direction_angles,
    cone_directions,
    inplane_offsets,
    orientation_set,
    refined_orientation_set,
    rotation_distance_deg,
)


def _angle_between_deg(u, v):
    """(m, n) angles between unit vectors u (m, 3) and v (n, 3)."""
    return np.degrees(np.arccos(np.clip(u @ v.T, -1.0, 1.0)))


def _random_directions_in_cone(rng, n, half_deg):
    """Uniform random unit vectors within ``half_deg`` of +z."""
    cos_min = np.cos(np.radians(half_deg))
    z = rng.uniform(cos_min, 1.0, n)
    phi = rng.uniform(0.0, 2 * np.pi, n)
    r = np.sqrt(1.0 - z * z)
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def _random_rotations(rng, n):
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def test_full_sphere_ring_counts_follow_the_chord_formula():
    d = cone_direction_angles(360, 30)
    thetas, counts = np.unique(d[:, 1], return_counts=True)
    np.testing.assert_allclose(thetas, [0, 30, 60, 90, 120, 150, 180])
    # ring at theta holds ceil(360 / dphi), cos dphi = (cos cs - cos^2 theta) / sin^2 theta
    assert counts.tolist() == [1, 6, 11, 12, 11, 6, 1]
    assert len(d) == 48
    # neighbours on each ring are at most cs apart (great circle), and not much closer
    v = cone_directions(360, 30)
    for t in (30, 60, 90, 120, 150):
        ring = v[np.isclose(d[:, 1], t)]
        gap = _angle_between_deg(ring[:1], ring[1:2])[0, 0]
        assert 0.8 * 30 < gap <= 30 + 1e-9


def test_cone_axis_first_and_directions_inside_the_cone():
    v = cone_directions(60, 10)
    np.testing.assert_allclose(v[0], [0, 0, 1])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0)
    assert np.degrees(np.arccos(v[:, 2].min())) <= 30 + 1e-9
    assert len(cone_directions(0, 10)) == 1  # cone_range 0: the current axis only
    # the direction formula is Dynamo's particle z axis for (tdrot, tilt)
    d = cone_direction_angles(60, 10)
    z_axes = dynamo_euler_to_matrix(np.column_stack([d, np.zeros(len(d))]))[:, :, 2]
    np.testing.assert_allclose(z_axes, v, atol=1e-12)


@pytest.mark.parametrize("cone_range, cs", [(360, 30), (360, 15), (90, 10), (40, 20)])
def test_cone_covering_radius(cone_range, cs):
    rng = np.random.default_rng(4)
    samples = cone_directions(cone_range, cs)
    probes = _random_directions_in_cone(rng, 20000, min(180, cone_range / 2))
    covering = _angle_between_deg(probes, samples).min(axis=1).max()
    # rings cs apart with neighbours <= cs apart: the worst hole is near cs/sqrt(2)
    assert 0.45 * cs < covering <= 0.75 * cs, covering


def test_inplane_offsets_symmetric_full_and_empty():
    np.testing.assert_allclose(inplane_offsets(60, 10), [0, 10, -10, 20, -20, 30, -30])
    full = inplane_offsets(360, 45)
    assert len(full) == 8 and full[0] == 0 and np.isclose(np.abs(full).max(), 180)
    assert len(np.unique(np.round(full % 360, 6))) == 8  # +180 and -180 counted once
    assert inplane_offsets(0, 10).tolist() == [0.0]
    assert inplane_offsets(10, 10).tolist() == [0.0]  # range == sampling: no in-plane scan
    # a range that is not a multiple of the step rounds the edge to the nearest step
    np.testing.assert_allclose(inplane_offsets(50, 20), [0, 20, -20])
    np.testing.assert_allclose(inplane_offsets(70, 20), [0, 20, -20, 40, -40])


def test_cn_symmetry_restricts_a_global_inplane_scan_only():
    six = inplane_offsets(360, 5, symmetry_order=6)
    assert len(six) == 12 and np.all(np.abs(six) <= 30 + 1e-9)
    # every in-plane angle is within is/2 of an offset modulo 60 degrees
    probes = np.linspace(-180, 180, 721)
    diff = np.abs(((probes[:, None] - six[None, :] + 30) % 60) - 30).min(axis=1)
    assert diff.max() <= 2.5 + 1e-9
    np.testing.assert_allclose(inplane_offsets(20, 5, symmetry_order=6), inplane_offsets(20, 5))


def test_inplane_flip_adds_the_turned_offsets():
    np.testing.assert_allclose(inplane_offsets(20, 10, flip=True), [0, 10, -10, 180, -170, 170])


def test_orientation_set_contains_the_current_pose_and_stays_local():
    r0 = dynamo_euler_to_matrix((37.0, 64.0, -121.0))
    cands = orientation_set(r0, 40, 10, 30, 5)
    np.testing.assert_allclose(cands[0], r0, atol=1e-12)
    np.testing.assert_allclose(np.einsum("nji,njk->nik", cands, cands), np.broadcast_to(np.eye(3), cands.shape), atol=1e-12)
    # the candidates' axes lie in the 20-degree half cone around the particle axis
    axis_tilt = np.degrees(np.arccos(np.clip(cands[:, :, 2] @ r0[:, 2], -1, 1)))
    assert axis_tilt.max() <= 20 + 1e-6 and axis_tilt.max() > 19
    # pure in-plane candidates are narot changes of +-15 at most
    same_axis = cands[axis_tilt < 1e-6]
    eul = matrix_to_dynamo_euler(same_axis)
    dnarot = (eul[:, 2] - (-121.0) + 180) % 360 - 180
    np.testing.assert_allclose(np.sort(dnarot), [-15, -10, -5, 0, 5, 10, 15], atol=1e-6)
    assert len(cands) == len(cone_directions(40, 10)) * 7


def test_axis_moves_without_inplane_twist():
    # for a pure cone step the candidate is the shortest rotation taking the axis there
    r0 = dynamo_euler_to_matrix((10.0, 30.0, 50.0))
    cands = orientation_set(r0, 60, 15, 0, 5)
    axis_tilt = np.degrees(np.arccos(np.clip(cands[:, :, 2] @ r0[:, 2], -1, 1)))
    np.testing.assert_allclose(rotation_distance_deg(r0, cands), axis_tilt, atol=1e-6)


def test_full_scan_covers_so3():
    rng = np.random.default_rng(7)
    cands = orientation_set(np.eye(3), 360, 30, 360, 30)
    probes = _random_rotations(rng, 3000)
    dist = rotation_distance_deg(probes[:, None], cands[None]).min(axis=1)
    assert dist.max() <= 30.0, dist.max()
    assert len(cands) == 48 * 12  # one direction per pole, so no repeated pose
    assert rotation_distance_deg(cands[:, None], cands[None])[np.triu_indices(len(cands), 1)].min() > 1


def test_cone_flip_adds_the_opposite_cone():
    r0 = dynamo_euler_to_matrix((0.0, 40.0, 0.0))
    cands = orientation_set(r0, 20, 10, 0, 10, cone_flip=1)
    dots = cands[:, :, 2] @ r0[:, 2]
    assert np.sum(dots > 0.9) == np.sum(dots < -0.9) == len(cands) // 2


def test_refined_levels_halve_the_step_around_the_best():
    scan = AngularScan(360, 30, 360, 30, symmetry_order=6)
    lvl1, lvl2 = scan.refined(1, 2), scan.refined(2, 2)
    assert (lvl1.cone_range_deg, lvl1.cone_sampling_deg) == (60, 15)
    assert (lvl1.inplane_range_deg, lvl1.inplane_sampling_deg) == (60, 15)
    assert (lvl2.cone_range_deg, lvl2.cone_sampling_deg) == (30, 7.5)
    best = dynamo_euler_to_matrix((123.0, 77.0, 12.0))
    cands = refined_orientation_set(best, scan, 1, 2)
    np.testing.assert_allclose(cands[0], best, atol=1e-12)
    axis_tilt = np.degrees(np.arccos(np.clip(cands[:, :, 2] @ best[:, 2], -1, 1)))
    assert axis_tilt.max() <= 30 + 1e-6  # refine_factor * previous step / 2
    near = np.unique(np.round(axis_tilt, 3))
    np.testing.assert_allclose(near, [0, 15, 30], atol=1e-3)
    # the refined set brackets the best: some candidate is within the new step of any
    # pose within the previous step/2 of the best
    rng = np.random.default_rng(2)
    probes = best @ _small_rotations(rng, 500, 15.0)
    dist = rotation_distance_deg(probes[:, None], cands[None]).min(axis=1)
    assert dist.max() <= 15.0


def _small_rotations(rng, n, max_deg):
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    ang = np.radians(rng.uniform(0, max_deg, n))
    k = np.zeros((n, 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axes[:, 2], axes[:, 1], -axes[:, 0]
    k = k - np.swapaxes(k, 1, 2)
    return np.eye(3) + np.sin(ang)[:, None, None] * k + (1 - np.cos(ang))[:, None, None] * k @ k


def test_refinement_keeps_unexplored_dimensions_and_flip_modes():
    scan = AngularScan(40, 10, 0, 10, cone_flip=1, inplane_flip=2)
    lvl = scan.refined(1, 2)
    assert lvl.inplane_range_deg == 0 and lvl.cone_range_deg == 20
    assert lvl.cone_flip == 0 and lvl.inplane_flip == 2
    assert scan.refined(0, 2) == scan


@pytest.mark.parametrize("kwargs, key", [
    (dict(cone_sampling_deg=0), "cone_sampling"),
    (dict(inplane_sampling_deg=-5), "inplane_sampling"),
    (dict(cone_range_deg=-10), "cone_range"),
    (dict(inplane_range_deg=400), "inplane_range"),
    (dict(cone_sampling_deg=float("nan")), "cone_sampling"),
    (dict(symmetry_order=0), "sym"),
    (dict(cone_flip=3), "cone_flip"),
])
def test_bad_values_name_the_key(kwargs, key):
    base = dict(cone_range_deg=60, cone_sampling_deg=10, inplane_range_deg=60,
                inplane_sampling_deg=10)
    with pytest.raises(InputError) as err:
        AngularScan(**{**base, **kwargs}, where="rounds[2].")
    assert err.value.source == "rounds[2]." + key


def test_bad_refinement_and_pose():
    scan = AngularScan(60, 10, 60, 10)
    with pytest.raises(InputError, match="refine_factor"):
        scan.refined(1, 0)
    with pytest.raises(InputError, match="refine"):
        scan.refined(-1, 2)
    with pytest.raises(InputError, match="current_matrix"):
        scan.around(np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(InputError, match="cone_sampling"):
        orientation_set(np.eye(3), 360, 0, 360, 10)
