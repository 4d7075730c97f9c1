"""Alignment search (stasnake.sta.align) against synthetic ground truth.

Particles are the chiral C6 unit (32 px, 5.4 Å/px) at known poses and shifts,
wedged and noisy (``stasnake.synth.particles``). Errors are measured against
the truth: angles by the geodesic distance (modulo C6 only where the search
uses the symmetry), shifts in full-size pixels. Measured numbers are printed
(``pytest -s``).
"""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from stasnake.errors import InputError
from stasnake.geometry.euler import dynamo_euler_to_matrix
from stasnake.sta.align import (
    SearchParams,
    align_particles,
    bandpass,
    prepare_reference,
    score_particles,
)
from stasnake.sta.angles import rotation_distance_deg
from stasnake.sta.rotate import rotation_about_z
from stasnake.synth.particles import random_rotations, simulate_particles
from stasnake.synth.unit import unit_map

BOX = 32


@pytest.fixture(scope="module")
def unit():
    return unit_map(BOX, 5.4)


def _perturb(matrices, angles_deg, rng):
    """Each pose turned by the given angle about a random axis."""
    axes = rng.normal(size=(len(matrices), 3))
    axes /= np.linalg.norm(axes, axis=1)[:, None]
    return matrices @ Rotation.from_rotvec(axes * np.radians(angles_deg)[:, None]).as_matrix()


def _cn_distance(a, b, order):
    """Geodesic distance in degrees modulo the Cn symmetry of the reference (about its z)."""
    return np.min(
        [rotation_distance_deg(a, b @ rotation_about_z(360.0 * k / order)) for k in range(order)],
        axis=0,
    )


def _tilts(m, half_range):
    return np.tile([-half_range, half_range], (m, 1))


def _report(name, ang, sh, final_sampling):
    print(
        f"\n{name}: angle error median {np.median(ang):.2f} max {ang.max():.2f} deg, "
        f"within {final_sampling:g} deg {np.mean(ang <= final_sampling):.0%}; "
        f"shift error median {np.median(sh):.3f} max {sh.max():.3f} px"
    )


def _noise_free(unit, seed, m, max_shift):
    """m noise-free wedged particles at random poses and shifts up to max_shift px: (particles, poses, shifts)."""
    rng = np.random.default_rng(seed)
    rots = random_rotations(m, rng)
    shifts = rng.uniform(-max_shift, max_shift, (m, 3))
    return simulate_particles(unit, rots, shifts, rng, (-60, 60), snr=np.inf), rots, shifts


def test_known_pose_scores_near_one_and_shift_is_recovered(unit):
    """Noise-free particles at their true orientation: CC ~ 1 there, shifts found to 0.02 px."""
    m = 6
    parts, rots, shifts = _noise_free(unit, 0, m, 2.5)
    params = SearchParams(0, 10, 0, 10, low=12)
    ref = prepare_reference(unit, params)
    at_truth = score_particles(parts, rots, shifts, _tilts(m, 60), ref, params)
    off_by_half = score_particles(parts, rots, shifts + 0.5, _tilts(m, 60), ref, params)
    res = align_particles(parts, rots, np.zeros((m, 3)), _tilts(m, 60), ref, params)
    err = np.abs(res.shifts_xyz - shifts).max()
    print(
        f"\nCC at truth {at_truth.min():.4f}..{at_truth.max():.4f}, 0.5 px off {off_by_half.max():.3f}, "
        f"shift error max {err:.4f} px, CC found {res.cc.min():.4f}"
    )
    assert at_truth.min() > 0.99
    assert off_by_half.max() < at_truth.min() - 0.05
    assert err < 0.02
    assert res.n_evaluated == m  # cone and in-plane ranges 0: the current pose only
    np.testing.assert_allclose(res.matrices, rots)
    np.testing.assert_allclose(res.cc, at_truth, atol=2e-3)


@pytest.mark.parametrize("snr", [np.inf, 0.1])
def test_c1_cone_search_recovers_poses(unit, snr):
    """Starts 10-15 deg and ~1.5 px off; cone 40/10, in-plane 40/10, 2 refinements (final 2.5 deg)."""
    rng = np.random.default_rng(10)
    m = 40
    rots = random_rotations(m, rng)
    shifts = rng.uniform(-2, 2, (m, 3))
    parts = simulate_particles(unit, rots, shifts, rng, (-60, 60), snr=snr)
    start = _perturb(rots, rng.uniform(10, 15, m), rng)
    start_shifts = shifts + rng.normal(0, 1.5 / np.sqrt(3), (m, 3))
    params = SearchParams(40, 10, 40, 10, refine=2, low=14)
    ref = prepare_reference(unit, params)
    res = align_particles(
        parts, start, start_shifts, _tilts(m, 60), ref, params, shift_centres_xyz=start_shifts
    )
    ang = rotation_distance_deg(res.matrices, rots)
    sh = np.linalg.norm(res.shifts_xyz - shifts, axis=1)
    final = 10 / 2**2
    _report(f"C1 search, SNR {snr}", ang, sh, final)
    print(
        f"start error median {np.median(rotation_distance_deg(start, rots)):.1f} deg; "
        f"{res.n_evaluated} orientation evaluations"
    )
    if np.isinf(snr):
        assert ang.max() <= final and sh.max() < 0.5
    else:
        assert np.mean(ang <= final) >= 0.9 and np.mean(sh < 0.5) >= 0.9
        assert np.median(ang) < 0.8 * final


def test_c6_search_with_global_inplane_scan(unit):
    """Random in-plane start, axis 8-12 deg off: a global in-plane scan restricted to 60 deg by C6."""
    rng = np.random.default_rng(1)
    m = 40
    rots = random_rotations(m, rng)
    shifts = rng.uniform(-2, 2, (m, 3))
    parts = simulate_particles(unit, rots, shifts, rng, (-60, 60), snr=0.1)
    spin = np.array([rotation_about_z(a) for a in rng.uniform(0, 360, m)])
    start = _perturb(rots, rng.uniform(8, 12, m), rng) @ spin
    params = SearchParams(30, 10, 360, 10, refine=2, low=14, symmetry_order=6)
    ref = prepare_reference(unit, params)
    res = align_particles(parts, start, shifts, _tilts(m, 60), ref, params)
    ang = _cn_distance(res.matrices, rots, 6)
    sh = np.linalg.norm(res.shifts_xyz - shifts, axis=1)
    _report("C6 search, SNR 0.1", ang, sh, 2.5)
    n_base = len(params.scan().relative())
    assert n_base == 7 * 6  # 7 cone directions x 6 in-plane angles (60 deg / 10)
    assert np.mean(ang <= 2.5) >= 0.9 and sh.max() < 0.5


def _top_views(m, rng):
    """Poses whose z axis is within 25 deg of the tomogram z: the unit's strong kz content is in the wedge."""
    eul = np.column_stack([rng.uniform(0, 360, m), rng.uniform(0, 25, m), rng.uniform(0, 360, m)])
    return dynamo_euler_to_matrix(eul).reshape(-1, 3, 3)


def test_wedge_is_applied_to_the_reference(unit):
    """Top views in a +-45 deg tomogram align; ignoring the wedge (tilt range +-90) biases them."""
    rng = np.random.default_rng(2)
    m = 24
    rots = _top_views(m, rng)
    shifts = rng.uniform(-2, 2, (m, 3))
    parts = simulate_particles(unit, rots, shifts, rng, (-45, 45), snr=0.3)
    start = _perturb(rots, rng.uniform(10, 15, m), rng)
    params = SearchParams(40, 10, 40, 10, refine=2, low=12)
    ref = prepare_reference(unit, params)
    fractions = {}
    for given in (45, 90):
        res = align_particles(parts, start, shifts, _tilts(m, given), ref, params)
        ang = rotation_distance_deg(res.matrices, rots)
        _report(
            f"top views, wedge +-45, aligned with +-{given}",
            ang,
            np.linalg.norm(res.shifts_xyz - shifts, axis=1),
            2.5,
        )
        fractions[given] = np.mean(ang <= 2.5)
    assert fractions[45] >= 0.85
    assert fractions[90] <= 0.5


def test_binned_search_reports_full_size_shifts(unit):
    """dim 16 of a 32 box: window steps of 2 px, shifts still in full-size pixels."""
    rng = np.random.default_rng(3)
    m = 12
    rots = random_rotations(m, rng)
    shifts = rng.uniform(-3, 3, (m, 3))
    parts = simulate_particles(unit, rots, shifts, rng, (-60, 60), snr=0.3)
    errors = {}
    for dim, low in ((32, 7), (16, 7), (16, None)):
        params = SearchParams(0, 10, 0, 10, dim=dim, low=low, shift_limits_xyz=(5, 5, 5))
        res = align_particles(
            parts, rots, np.zeros((m, 3)), _tilts(m, 60), prepare_reference(unit, params), params
        )
        errors[(dim, low)] = np.abs(res.shifts_xyz - shifts).max()
    print("\nmax shift error by (dim, low):", {k: round(float(v), 3) for k, v in errors.items()})
    assert max(errors.values()) < 0.25


def test_shift_limits_centres_and_unlimited(unit):
    """A particle 6.5 px off centre: found without limits or with a moved centre; clipped to the ellipsoid."""
    rng = np.random.default_rng(4)
    rot = random_rotations(1, rng)
    truth = np.array([[6.5, -2.0, 1.0]])
    part = simulate_particles(unit, rot, truth, rng, (-60, 60), snr=np.inf)
    tilts = _tilts(1, 60)
    results = {}
    for lim, centre in (
        (None, None),
        ((4, 4, 4), None),
        ((4, 4, 4), [[5.0, -1.0, 0.0]]),
        ((7, 3, 3), None),
    ):
        params = SearchParams(0, 10, 0, 10, low=10, shift_limits_xyz=lim)
        res = align_particles(
            part,
            rot,
            np.zeros((1, 3)),
            tilts,
            prepare_reference(unit, params),
            params,
            shift_centres_xyz=centre,
        )
        results[(lim, None if centre is None else tuple(centre[0]))] = res.shifts_xyz[0]
    print("\n", {k: np.round(v, 3).tolist() for k, v in results.items()})
    np.testing.assert_allclose(results[(None, None)], truth[0], atol=0.02)
    np.testing.assert_allclose(results[((4, 4, 4), (5.0, -1.0, 0.0))], truth[0], atol=0.02)
    for key in (((4, 4, 4), None), ((7, 3, 3), None)):
        s = results[key] / np.asarray(key[0])
        assert np.sum(s**2) <= 1 + 1e-5  # the refined peak stays inside the allowed ellipsoid
    assert np.linalg.norm(results[((4, 4, 4), None)] - truth[0]) > 2


def test_shift_limits_on_the_particle_axes(unit):
    """area_search on each particle's own axes: a particle 4.5 px off along its z axis (lying
    along tomogram x) is found with limits (1, 1, 6) in the particle frame and not with the same
    limits on the box axes; the found shift is inside the rotated ellipsoid."""
    rng = np.random.default_rng(8)
    rot = Rotation.from_euler("y", 90, degrees=True).as_matrix()[None]  # particle z -> tomogram -x
    truth = rot[0] @ np.array([0.4, -0.3, 4.5])
    part = simulate_particles(unit, rot, truth[None], rng, (-60, 60), snr=np.inf)
    found = {}
    for frame in ("particle", "box"):
        params = SearchParams(0, 10, 0, 10, low=10, shift_limits_xyz=(1, 1, 6), shift_frame=frame)
        res = align_particles(part, rot, np.zeros((1, 3)), _tilts(1, 60), prepare_reference(unit, params), params)
        found[frame] = res.shifts_xyz[0]
    print("\n", {k: np.round(v, 3).tolist() for k, v in found.items()}, "truth", np.round(truth, 3).tolist())
    np.testing.assert_allclose(found["particle"], truth, atol=0.05)
    assert np.linalg.norm(found["box"] - truth) > 3
    local = rot[0].T @ found["particle"]
    assert np.sum((local / np.array([1, 1, 6])) ** 2) <= 1 + 0.05


def test_sequence_input_progress_and_device_check(unit):
    """Particles as a list (read one at a time) give the array's result; progress is reported."""
    rng = np.random.default_rng(5)
    m = 20
    rots = random_rotations(m, rng)
    parts = simulate_particles(unit, rots, np.zeros((m, 3)), rng, (-60, 60), snr=1.0)
    params = SearchParams(20, 10, 20, 10, low=10)
    ref = prepare_reference(unit, params)
    calls = []
    a = align_particles(parts, rots, np.zeros((m, 3)), _tilts(m, 60), ref, params)
    b = align_particles(
        list(parts),
        rots,
        np.zeros((m, 3)),
        _tilts(m, 60),
        ref,
        params,
        progress=lambda done, total: calls.append((done, total)),
    )
    np.testing.assert_array_equal(a.matrices, b.matrices)
    np.testing.assert_array_equal(a.cc, b.cc)
    assert calls[-1] == (m, m) and len(calls) >= 2
    with pytest.raises(ValueError, match="device"):
        align_particles(parts, rots, np.zeros((m, 3)), _tilts(m, 60), ref, params, device="tpu")


def test_score_with_a_classification_mask(unit):
    """A mask replaces the alignment mask; the true pose still scores far above a wrong one."""
    rng = np.random.default_rng(6)
    m = 4
    rots = random_rotations(m, rng)
    parts = simulate_particles(unit, rots, np.zeros((m, 3)), rng, (-60, 60), snr=1.0)
    params = SearchParams(0, 10, 0, 10, low=10)
    zz, yy, xx = np.indices((BOX,) * 3) - BOX // 2
    mask = (np.sqrt(xx**2 + yy**2 + zz**2) < 10).astype(np.float32)
    ref = prepare_reference(unit, params)
    right = score_particles(parts, rots, np.zeros((m, 3)), _tilts(m, 60), ref, params, mask=mask)
    wrong = score_particles(
        parts, random_rotations(m, rng), np.zeros((m, 3)), _tilts(m, 60), unit, params, mask=mask
    )
    print(f"\nmasked CC at truth {right.round(3)}, at random poses {wrong.round(3)}")
    assert right.min() > 0.4 and wrong.max() < right.min() - 0.2
    with pytest.raises(InputError, match="alignment mask of shape"):
        score_particles(parts, rots, np.zeros((m, 3)), _tilts(m, 60), ref, params, mask=mask[:-1])


def test_bandpass_edges():
    r = np.array([0.0, 1.0, 2.0, 5.0, 10.0, 11.0, 12.0, 13.0])
    b = bandpass(r, low=10, high=2)
    np.testing.assert_allclose(b, [0, 0.5, 1, 1, 1, 0.5, 0, 0], atol=1e-12)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"cone_sampling": 0}, "cone_sampling"),
        ({"inplane_sampling": -5}, "inplane_sampling"),
        ({"low": 4, "high": 4}, "low"),
        ({"low": 9}, "low"),  # beyond dim/2 = 8
        ({"dim": 40}, "dim"),
        ({"dim": 6}, "dim"),
        ({"high": -1}, "high"),
        ({"shift_limits_xyz": (1, -2, 3)}, "shift_limits_xyz"),
        ({"refine": -1}, "refine"),
    ],
)
def test_bad_parameters_name_the_key(unit, changes, key):
    base = dict(
        cone_range=30, cone_sampling=10, inplane_range=30, inplane_sampling=10, dim=16, low=6
    )
    params = SearchParams(**{**base, **changes})
    parts = np.zeros((1, BOX, BOX, BOX), np.float32)
    with pytest.raises(InputError) as err:
        ref = prepare_reference(unit, params)
        align_particles(parts, np.eye(3)[None], np.zeros((1, 3)), _tilts(1, 60), ref, params)
    assert err.value.source == key, str(err.value)


def test_bad_arrays_are_reported(unit):
    params = SearchParams(0, 10, 0, 10, low=8)
    ref = prepare_reference(unit, params)
    good = dict(
        particles=np.zeros((2, BOX, BOX, BOX), np.float32),
        matrices=np.tile(np.eye(3), (2, 1, 1)),
        shifts_xyz=np.zeros((2, 3)),
        tilt_ranges_deg=_tilts(2, 60),
    )
    with pytest.raises(InputError, match="alignment mask of shape"):
        prepare_reference(unit, params, np.ones((BOX, BOX, BOX - 1)))
    with pytest.raises(InputError, match="particle 1"):
        align_particles(
            [good["particles"][0], np.zeros((16, 16, 16))],
            good["matrices"],
            good["shifts_xyz"],
            good["tilt_ranges_deg"],
            ref,
            params,
        )
    with pytest.raises(InputError, match="matrices"):
        align_particles(**{**good, "matrices": np.ones((2, 3, 3))}, reference=ref, params=params)
    with pytest.raises(InputError, match="tilt"):
        align_particles(
            **{**good, "tilt_ranges_deg": np.array([[-60, 60], [70, 10]])},
            reference=ref,
            params=params,
        )
    with pytest.raises(InputError, match="reference"):
        align_particles(**good, reference=ref, params=SearchParams(0, 10, 0, 10, low=9))


def test_ctf_scores_reduce_to_the_wedge_with_unit_transfer_and_find_the_pose(unit):
    """With H = 1 the transfer-weighted score is the constrained CC; with a CTF-like H it still finds the truth."""
    m = 6
    parts, rots, shifts = _noise_free(unit, 21, m, 1.5)
    params = SearchParams(20, 10, 20, 10, refine=1, low=12)
    ref = prepare_reference(unit, params)
    tilts = np.radians(np.arange(-60.0, 61.0, 3.0))
    ones = [(tilts, np.ones((tilts.size, 60)), 2.0)] * m
    plain = align_particles(parts, rots, np.zeros((m, 3)), _tilts(m, 60), ref, params)
    unit_h = align_particles(parts, rots, np.zeros((m, 3)), _tilts(m, 60), ref, params, transfers=ones)
    np.testing.assert_allclose(unit_h.cc, plain.cc, rtol=1e-5)
    np.testing.assert_allclose(unit_h.shifts_xyz, plain.shifts_xyz, atol=1e-4)
    # a transfer falling with |k| and with the tilt (late tilts weaker), as exposure does
    r = np.arange(60) / 2.0
    table = np.exp(-((r / 10.0) ** 2))[None, :] * (1.0 - 0.5 * np.abs(tilts) / tilts.max())[:, None]
    weighted = align_particles(parts, rots, np.zeros((m, 3)), _tilts(m, 60), ref, params,
                               transfers=[(tilts, table, 2.0)] * m)  # fmt: skip
    assert rotation_distance_deg(weighted.matrices, rots).max() <= 5.0
    assert np.abs(weighted.shifts_xyz - shifts).max() < 0.1
    cc = score_particles(parts, rots, shifts, _tilts(m, 60), ref, params, transfers=[(tilts, table, 2.0)] * m)
    assert cc.min() > 0.5 and np.all(cc < 1.0)  # the particles were not made with this transfer
