"""Oversampling VLP spheres: spacing, normals (Dynamo convention) and agreement with synthetic truth."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from stasnake.geometry.euler import dynamo_euler_to_matrix
from stasnake.io.dynamo_table import read_table
from stasnake.picking.dipoles import dipoles_from_spheres
from stasnake.picking.oversample import (
    crop_table_from_dipoles,
    normals_to_dynamo_euler,
    oversample_sphere,
    spacing_for_box,
    sphere_point_count,
)
from stasnake.synth import generate_dataset
from stasnake.synth.config import SynthConfig


def _angle_deg(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.sum(a * b, axis=-1), -1.0, 1.0)))


def _table_normals(table):
    return dynamo_euler_to_matrix(table[["tdrot", "tilt", "narot"]].to_numpy(float))[:, :, 2]


@pytest.mark.parametrize(
    "radius, spacing", [(500.0, 120.0), (40.8, 15.0), (60.0, 20.0), (100.0, 10.0)]
)
def test_spacing_statistics(radius, spacing):
    pos, _ = oversample_sphere([0.0, 0.0, 0.0], radius, spacing)
    d, _ = cKDTree(pos).query(pos, k=2)
    nn = d[:, 1]
    print(f"\nr={radius} s={spacing}: n={len(pos)} mean NN/s={nn.mean() / spacing:.3f} "
          f"min={nn.min() / spacing:.3f} max={nn.max() / spacing:.3f}")  # fmt: skip
    assert abs(nn.mean() / spacing - 1.0) < 0.05
    assert nn.min() > 0.85 * spacing and nn.max() < 1.2 * spacing


def test_protocol_default_count():
    assert spacing_for_box(256) == pytest.approx(120.0)
    n = sphere_point_count(500.0, 120.0)  # a 135 nm VLP at 1.35 Å/px
    assert 150 < n < 250


@pytest.mark.parametrize("narot_random", [False, True])
def test_orientations_are_outward_normals(narot_random):
    centre = np.array([10.0, -4.0, 7.0])
    rng = np.random.default_rng(3) if narot_random else None
    pos, eulers = oversample_sphere(centre, 30.0, 8.0, rng)
    assert np.allclose(np.linalg.norm(pos - centre, axis=1), 30.0)
    z_axes = dynamo_euler_to_matrix(eulers)[:, :, 2]
    err = _angle_deg(z_axes, pos - centre)
    print(f"\nnormal error max {err.max():.2e} deg")
    assert err.max() < 1e-4
    assert np.any(eulers[:, 2] != 0) == narot_random
    poles = normals_to_dynamo_euler([[0, 0, 1], [0, 0, -1], [1, 0, 0]])
    assert np.allclose(dynamo_euler_to_matrix(poles)[:, :, 2], [[0, 0, 1], [0, 0, -1], [1, 0, 0]])


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    out = tmp_path_factory.mktemp("oversample_truth")
    config = dataclasses.replace(SynthConfig.tiny(), n_vlps=2, tomogram_shape_zyx=(64, 160, 160))
    generate_dataset(out, config)
    return (
        pd.read_csv(out / "truth" / "TS_01" / "vlps.csv"),
        read_table(out / "truth" / "TS_01" / "particles.tbl"),
        config,
    )


def test_crop_table_from_exact_dipoles_matches_truth(truth):
    vlps, particles, config = truth
    shape = config.tomogram_shape_zyx
    centres = vlps[["x", "y", "z"]].to_numpy(float)
    dipoles = dipoles_from_spheres(centres, vlps.radius_px.to_numpy())
    spacing = 4.0
    offset = float((vlps.lattice_radius_px - vlps.radius_px).iloc[0])
    table, n_dropped = crop_table_from_dipoles(
        dipoles, spacing, 1, shape, radius_offset_px=offset, apix=10.8
    )
    assert n_dropped == 0 and len(table) > 0
    assert list(table.tag) == list(range(1, len(table) + 1))
    assert set(table.reg) == {1, 2} and set(table.tomo) == {1} and np.all(table.apix == 10.8)
    pos = table[["x", "y", "z"]].to_numpy(float)
    reg = table.reg.to_numpy()
    radial = pos - centres[reg - 1]
    dist_err = np.abs(np.linalg.norm(radial, axis=1) - vlps.lattice_radius_px.to_numpy()[reg - 1])
    normal_err = _angle_deg(_table_normals(table), radial)
    # every true lattice unit lies near a crop point whose orientation matches the truth z axis
    true_pos = particles[["x", "y", "z"]].to_numpy(float)
    d, nearest = cKDTree(pos).query(true_pos)
    same_axis = _angle_deg(_table_normals(particles), _table_normals(table)[nearest])
    print(f"\nexact dipoles: {len(table)} points, radius error max {dist_err.max():.2e} px, normal error max "
          f"{normal_err.max():.2e} deg; truth unit -> nearest crop point max {d.max():.2f} px "
          f"(spacing {spacing}), z-axis difference there max {same_axis.max():.1f} deg")  # fmt: skip
    assert dist_err.max() < 1e-6 and normal_err.max() < 1e-4
    assert d.max() < 0.75 * spacing
    assert same_axis.max() < 0.75 * np.degrees(spacing / vlps.lattice_radius_px.min())
    true_normals_at_units = _angle_deg(
        _table_normals(particles), true_pos - centres[particles.reg.to_numpy() - 1]
    )
    assert true_normals_at_units.max() < 1.0  # synthetic lattice uses the same convention


def test_crop_table_with_click_errors(truth):
    vlps, _, config = truth
    rng = np.random.default_rng(7)
    click_sigma = 2.0  # px per coordinate and click
    centres = vlps[["x", "y", "z"]].to_numpy(float)
    radii = vlps.radius_px.to_numpy()
    direction = rng.normal(size=(len(vlps), 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    dipoles = dipoles_from_spheres(centres + rng.normal(scale=click_sigma, size=centres.shape), 1.0)
    surface = (
        centres + radii[:, None] * direction + rng.normal(scale=click_sigma, size=centres.shape)
    )
    for k, a in enumerate("xyz"):
        dipoles[f"surface_{a}"] = surface[:, k]
    dipoles["radius_px"] = np.linalg.norm(
        surface - dipoles[["center_x", "center_y", "center_z"]].to_numpy(), axis=1
    )
    table, _ = crop_table_from_dipoles(dipoles, 4.0, 1, config.tomogram_shape_zyx)
    pos = table[["x", "y", "z"]].to_numpy(float)
    radial = pos - centres[table.reg.to_numpy() - 1]
    dist_err = np.abs(np.linalg.norm(radial, axis=1) - radii[table.reg.to_numpy() - 1])
    normal_err = _angle_deg(_table_normals(table), radial)
    print(f"\nclick errors sigma {click_sigma} px: distance to true membrane sphere mean {dist_err.mean():.2f} "
          f"max {dist_err.max():.2f} px; normal error mean {normal_err.mean():.1f} max {normal_err.max():.1f} deg")  # fmt: skip
    assert dist_err.max() < 6.0 * click_sigma
    assert normal_err.max() < np.degrees(6.0 * click_sigma / radii.min())


def test_points_outside_the_tomogram_are_dropped():
    dipoles = dipoles_from_spheres([[10.0, 50.0, 20.0], [50.0, 50.0, 20.0]], [15.0, 10.0])
    table, n_dropped = crop_table_from_dipoles(dipoles, 5.0, 3, (40, 100, 100))
    n_all = sphere_point_count(15.0, 5.0) + sphere_point_count(10.0, 5.0)
    assert n_dropped > 0 and len(table) + n_dropped == n_all
    pos = table[["x", "y", "z"]].to_numpy(float)
    assert np.all(pos >= 1.0) and np.all(pos <= [100, 100, 40])
    assert set(table.reg) == {1, 2} and np.all(table.tomo == 3)
