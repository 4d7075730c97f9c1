"""Map-to-map alignment: average of averages (5A), half maps (9), alignment onto the truth."""

from __future__ import annotations

import numpy as np
import pytest

from stasnake.errors import InputError
from stasnake.sta.align import SearchParams
from stasnake.sta.angles import rotation_distance_deg
from stasnake.sta.average import average_particles
from stasnake.sta.map_alignment import (
    align_half_maps,
    align_map,
    align_to_truth,
    average_of_averages,
    compare_with_truth_aligned,
)
from stasnake.sta.poses import table_poses
from stasnake.sta.rotate import rotate_volume, rotation_about_z
from stasnake.sta.table_ops import rigid_transform, subbox
from stasnake.sta.validate import mirror_z
from stasnake.synth.particles import random_rotations, simulate_particles, truth_table
from stasnake.synth.unit import unit_map

BOX = 40
APIX = 3.0


@pytest.fixture(scope="module")
def unit():
    return unit_map(BOX, APIX)


def _rotation(axis, angle_deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    a = np.radians(angle_deg)
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


def _place(volume, r, s):
    """A map ``m`` with ``m(r p + c + s) = volume(p + c)`` (cubic splines)."""
    return rotate_volume(volume, r.T, -r.T @ np.asarray(s, float), order=3)


def _c6_error_deg(r_est, r_true):
    """Angle between two poses of a C6 map about z (the in-plane angle is defined modulo 60 deg)."""
    return min(
        float(rotation_distance_deg(r_est, r_true @ rotation_about_z(60.0 * k))) for k in range(6)
    )


def _corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_align_map_recovers_known_pose(unit):
    r_true = _rotation([0.3, -0.2, 1.0], 14.0)
    s_true = np.array([1.6, -2.3, 0.7])
    moving = _place(unit, r_true, s_true)
    params = SearchParams(20, 4, 40, 4, refine=3, shift_limits_xyz=(4, 4, 4))
    r, s, cc = align_map(moving, unit, params)
    err, shift_err = _c6_error_deg(r, r_true), float(np.linalg.norm(s - s_true))
    print(f"align_map: angle error {err:.2f} deg, shift error {shift_err:.2f} px, cc {cc:.3f}")
    assert err < 1.5 and shift_err < 0.4 and cc > 0.95


def test_align_map_rejects_mismatched_boxes(unit):
    with pytest.raises(InputError):
        align_map(unit[:-2, :-2, :-2], unit, SearchParams(0, 5, 0, 5))


def test_half_maps_rigid_transform_round_trip(unit):
    rng = np.random.default_rng(7)
    m = 24
    mats = random_rotations(2 * m, rng)
    shifts = rng.uniform(-1.5, 1.5, (2 * m, 3))
    parts = simulate_particles(unit, mats, shifts, rng, tilt_range_deg=(-60, 60), snr=2.0)
    even, odd = slice(0, 2 * m, 2), slice(1, 2 * m, 2)
    tilts = np.tile([-60.0, 60.0], (m, 1))
    table_even = truth_table(mats[even], shifts[even], box_size=BOX)
    table_odd = truth_table(mats[odd], shifts[odd], box_size=BOX)
    # the even table lives in another frame: average(R_x p + c + s_x) = true frame
    r_x, s_x = _rotation([0.4, 0.1, 1.0], 11.0), np.array([-1.2, 2.1, 0.8])
    table_even_moved = rigid_transform(table_even, r_x, s_x)
    half2 = average_particles(parts[odd], *table_poses(table_odd), tilts)
    half1 = average_particles(parts[even], *table_poses(table_even_moved), tilts)
    before = _corr(half1, half2)

    r, s, cc = align_half_maps(half1, half2, APIX)
    r_exp, s_exp = r_x.T, -r_x.T @ s_x  # half1(R p + c + s) = half2(p + c)
    err, shift_err = _c6_error_deg(r, r_exp), float(np.linalg.norm(s - s_exp))

    table_fixed = rigid_transform(table_even_moved, r, s)
    half1_new = average_particles(parts[even], *table_poses(table_fixed), tilts)
    after = _corr(half1_new, half2)
    got_r, got_s = table_poses(table_fixed)
    pose_err = max(_c6_error_deg(a, b) for a, b in zip(got_r, mats[even], strict=True))
    pos_err = float(np.abs(got_s - shifts[even]).max())
    print(
        f"half maps: angle error {err:.2f} deg, shift error {shift_err:.2f} px, cc {cc:.3f}; "
        f"corr before {before:.3f}, after {after:.3f}; per-particle pose error {pose_err:.2f} deg, "
        f"shift {pos_err:.2f} px"
    )
    assert err < 2.0 and shift_err < 0.5
    assert after > 0.9 and after > before + 0.2
    assert pose_err < 2.0 and pos_err < 1.0


def test_average_of_averages_table_maps_markers(unit):
    rng = np.random.default_rng(3)
    n = 4
    poses = [_rotation(rng.normal(size=3) * [0.3, 0.3, 1.0], rng.uniform(-8, 8)) for _ in range(n)]
    shifts = rng.uniform(-2.0, 2.0, (n, 3))
    sigma = 0.3 * float(unit.std())
    averages = [
        _place(unit, r, s) + rng.normal(0, sigma, unit.shape).astype(np.float32)
        for r, s in zip(poses, shifts, strict=True)
    ]
    params = SearchParams(20, 4, 40, 4, refine=3, shift_limits_xyz=(4, 4, 4))
    table, merged = average_of_averages(averages, APIX, params, symmetry_order=6, iterations=2)
    assert list(table["tag"]) == [1, 2, 3, 4] and (table["ftype"] == 0).all()

    # a marker of the merged map, mapped into every average and back to the truth frame, is one point
    markers = np.array([[BOX // 2 + 1 + 7.0, BOX // 2 + 1 - 3.0, BOX // 2 + 1 + 4.0]])
    back = []
    for i in range(n):
        row = subbox(table.iloc[[i]], markers, BOX)
        x = row[["x", "y", "z"]].to_numpy()[0] - (BOX // 2 + 1)  # offset from average i's centre
        back.append(poses[i].T @ (x - shifts[i]))  # average_i(R_i q + c + s_i) = unit(q + c)
    back = np.array(back)
    spread = float(np.linalg.norm(back - back.mean(0), axis=1).max())
    # R_i(est) = R_i G for one unknown frame G of the merged map: R_i(est) R_j(est)^T = R_i R_j^T
    est = table_poses(table)[0]
    relative = max(
        float(rotation_distance_deg(est[i] @ est[j].T, poses[i] @ poses[j].T))
        for i in range(n)
        for j in range(i)
    )
    # the merged map is the unit in some frame: align it back and compare
    r_m, s_m, _ = align_map(merged, unit, params)
    corr = _corr(rotate_volume(merged, r_m, s_m), unit)
    print(
        f"average of averages: marker spread {spread:.2f} px, relative pose error {relative:.2f} deg, "
        f"merged vs truth corr {corr:.3f}, cc {table['cc'].round(3).tolist()}"
    )
    assert spread < 0.6 and relative < 2.0 and corr > 0.95


def test_average_of_averages_with_reference_gives_truth_frame(unit):
    r_true, s_true = _rotation([0.2, 0.5, 1.0], 9.0), np.array([1.0, -1.5, 0.5])
    averages = [_place(unit, r_true, s_true), _place(unit, np.eye(3), np.zeros(3))]
    params = SearchParams(20, 4, 40, 4, refine=2, shift_limits_xyz=(4, 4, 4))
    table, merged = average_of_averages(averages, APIX, params, iterations=1, reference=unit)
    r, s = table_poses(table)
    err, shift_err = _c6_error_deg(r[0], r_true), float(np.linalg.norm(s[0] - s_true))
    print(f"average of averages with reference: pose error {err:.2f} deg, shift {shift_err:.2f} px")
    assert err < 1.5 and shift_err < 0.4
    assert _corr(merged, unit) > 0.97


def test_align_to_truth_and_hand_check(unit):
    rng = np.random.default_rng(11)
    r_true = _rotation([0.25, -0.3, 1.0], 125.0)  # far in-plane turn plus ~20 deg tilt
    s_true = np.array([4.5, -3.0, 2.0])
    volume = _place(unit, r_true, s_true) + rng.normal(
        0, 0.2 * float(unit.std()), unit.shape
    ).astype(np.float32)
    aligned, r, s = align_to_truth(volume, unit, APIX)
    err, shift_err = _c6_error_deg(r, r_true), float(np.linalg.norm(s - s_true))
    corr = _corr(aligned, unit)
    fsc, fsc_mirror = compare_with_truth_aligned(volume, APIX, unit)
    mid = slice(3, 10)  # 40 Å .. 12 Å
    right, wrong = float(fsc["fsc"].iloc[mid].mean()), float(fsc_mirror["fsc"].iloc[mid].mean())
    print(
        f"align_to_truth: angle error {err:.2f} deg, shift error {shift_err:.2f} px, corr {corr:.3f}; "
        f"FSC 40-12 Å vs truth {right:.3f}, vs mirror {wrong:.3f}"
    )
    assert err < 2.0 and shift_err < 0.5 and corr > 0.95
    assert right > 0.9 and right > wrong + 0.1
    # a mirrored map is recognised as such
    fsc_m, fsc_mm = compare_with_truth_aligned(mirror_z(volume), APIX, unit)
    assert float(fsc_mm["fsc"].iloc[mid].mean()) > float(fsc_m["fsc"].iloc[mid].mean()) + 0.1
