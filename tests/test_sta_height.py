"""Height homogenisation: synthetic membrane, z-only registration, table shift along particle z."""

from __future__ import annotations

import numpy as np
import pytest

from stasnake.sta.average import average_particles, tilt_ranges_from_table
from stasnake.sta.height import (
    apply_height_shift,
    height_cc_profile,
    membrane_reference,
    register_height,
)
from stasnake.synth.particles import random_rotations, simulate_particles, truth_table
from stasnake.synth.unit import unit_map

BOX = 32
APIX = 5.4


def test_membrane_reference_geometry():
    ref = membrane_reference(BOX, APIX, leaflet_separation_angstrom=38.0, sigma_angstrom=6.0)
    profile = ref[:, BOX // 2, BOX // 2]
    peaks = np.sort(np.argsort(profile)[-2:])
    print("leaflet peaks at z =", peaks, "expected", BOX // 2 - 3.5, BOX // 2 + 3.5)
    assert np.allclose(peaks, [BOX // 2 - 3.5, BOX // 2 + 3.5], atol=0.6)
    assert ref.dtype == np.float32 and np.allclose(ref, ref[:, :1, :1])  # flat: constant in x, y
    curved = membrane_reference(BOX, APIX, radius_angstrom=400.0, z_centre_px=14.0)
    col = curved[:, BOX // 2, BOX // 2]
    edge = curved[:, BOX // 2, 0]
    # the mid-plane passes z = 14 on the central column and bends down (-z) towards the edge
    mid_centre = np.average(np.arange(BOX), weights=col)
    mid_edge = np.average(np.arange(BOX), weights=edge)
    print(f"curved mid-plane: centre {mid_centre:.2f}, edge {mid_edge:.2f}")
    assert mid_centre == pytest.approx(14.0, abs=0.3) and mid_edge < mid_centre - 1.0
    assert np.all(membrane_reference(BOX, APIX, polarity=-1.0) <= 0)


@pytest.mark.parametrize("true_dz", [-7.3, 0.0, 2.6, 9.45])
def test_register_height_subpixel(true_dz):
    reference = membrane_reference(BOX, APIX)
    moved = membrane_reference(BOX, APIX, z_centre_px=BOX // 2 + true_dz)
    dz = register_height(moved, reference, max_shift_px=20)
    print(f"true {true_dz:+.2f} measured {dz:+.3f} error {dz - true_dz:+.3f} px")
    assert abs(dz - true_dz) < 0.15
    shifts, cc = height_cc_profile(moved, reference, max_shift_px=5)
    assert shifts.tolist() == list(range(-5, 6)) and cc.max() <= 1.0 + 1e-9


def test_register_height_respects_limit():
    reference = membrane_reference(BOX, APIX)
    moved = membrane_reference(BOX, APIX, z_centre_px=BOX // 2 + 9)
    assert abs(register_height(moved, reference, max_shift_px=4)) <= 4


def _membrane_z(volume, reference):
    return register_height(volume, reference, max_shift_px=10)


def test_height_shift_moves_reaverage_to_reference_height():
    rng = np.random.default_rng(0)
    true_dz = 3.4  # the particles' membrane sits 3.4 px above the reference's
    reference = membrane_reference(BOX, APIX)
    truth = unit_map(BOX, APIX) + membrane_reference(BOX, APIX, z_centre_px=BOX // 2 + true_dz)
    m = 24
    mats = random_rotations(m, rng)
    shifts = rng.uniform(-2.0, 2.0, (m, 3))
    particles = simulate_particles(truth, mats, shifts, rng, snr=2.0)
    table = truth_table(mats, shifts, box_size=BOX)
    ranges = tilt_ranges_from_table(table)

    def average(tab):
        from stasnake.geometry.euler import dynamo_euler_to_matrix

        poses = dynamo_euler_to_matrix(tab[["tdrot", "tilt", "narot"]].to_numpy())
        return average_particles(particles, poses, tab[["dx", "dy", "dz"]].to_numpy(), ranges)

    before = average(table)
    dz = register_height(before, reference, max_shift_px=20)
    shifted = apply_height_shift(table, dz)
    # every particle moved by dz along its own z axis
    moved = shifted[["dx", "dy", "dz"]].to_numpy() - shifts
    np.testing.assert_allclose(moved, dz * mats[:, :, 2], atol=1e-4)
    assert np.allclose(shifted[["tdrot", "tilt", "narot"]], table[["tdrot", "tilt", "narot"]])
    after = average(shifted)
    z_before = _membrane_z(before, reference)
    z_after = _membrane_z(after, reference)
    z_truth = _membrane_z(truth, reference)
    print(f"registered dz {dz:+.3f} px (true {true_dz:+.2f}; clean map {z_truth:+.3f}); "
          f"membrane z vs reference: before {z_before:+.3f}, after {z_after:+.3f} px")  # fmt: skip
    assert abs(dz - true_dz) < 0.5
    assert abs(z_after) < 0.3
    # the sign convention: shifting the other way doubles the offset
    wrong = average(apply_height_shift(table, -dz))
    assert _membrane_z(wrong, reference) > 1.5 * true_dz
