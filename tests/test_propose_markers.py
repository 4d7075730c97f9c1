"""Marker proposals (steps 3B, 5B): autopilot and simulated clicker on synthetic lattice patches."""

import numpy as np
import pytest
import scipy.ndimage

from stasnake.errors import InputError
from stasnake.io.cmm import markers_to_pixels, read_cmm
from stasnake.picking.propose_markers import (
    ball_mask,
    masked_ncc,
    propose_reference_center,
    propose_unit_centres,
)
from stasnake.sta.average import symmetrize_cn
from stasnake.sta.height import membrane_reference
from stasnake.sta.rotate import rotate_volume, rotation_about_z
from stasnake.sta.wedge import apply_wedge
from stasnake.synth.annotations import lattice_unit_centres
from stasnake.synth.click_markers import click_unit_centres, write_clicks
from stasnake.synth.unit import unit_map

PX = 5.4
SPACING_A = 75.0
SPACING_PX = SPACING_A / PX
MEMBRANE_OFFSET_A = 90.0  # lattice sphere lies this far inside the membrane sphere


def _rotation_to(normal: np.ndarray) -> np.ndarray:
    """Active rotation taking +z to the unit vector ``normal`` about the axis z x normal."""
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, normal)
    s, c = np.linalg.norm(axis), float(normal @ z)
    if s < 1e-12:
        return np.eye(3)
    k = axis / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * kx @ kx


def lattice_patch(
    box, lattice_radius_px, offset_xy_px=(0.0, 0.0), azimuth_deg=0.0, z_offset_px=0.0
):
    """Units of a hexagonal lattice on a sphere and their poses, in a box's unit frame.

    The sphere's centre lies ``lattice_radius_px - z_offset_px`` below the box centre, on the
    box's central column. The planar lattice (nearest neighbours at ``azimuth_deg``, one
    lattice point at ``offset_xy_px`` from the column) is wrapped onto the sphere by the
    exponential map with a geodesic spacing whose chord is ``SPACING_PX``, so with zero offset
    the central unit and its six neighbours are :func:`lattice_unit_centres`.

    Returns (k, 3) 1-based (x, y, z) centres and (k, 3, 3) active poses (z = outward normal).
    """
    r = float(lattice_radius_px)
    geodesic = r * 2.0 * np.arcsin(SPACING_PX / (2.0 * r))
    a = np.radians(azimuth_deg)
    a1 = geodesic * np.array([np.cos(a), np.sin(a)])
    a2 = geodesic * np.array([np.cos(a + np.pi / 3), np.sin(a + np.pi / 3)])
    ij = np.arange(-6, 7)
    i, j = (g.ravel() for g in np.meshgrid(ij, ij))
    plane = np.asarray(offset_xy_px, float) + i[:, None] * a1 + j[:, None] * a2
    d = np.linalg.norm(plane, axis=1)
    keep = d < 0.75 * box
    plane, d = plane[keep], d[keep]
    order = np.argsort(d, kind="stable")
    plane, d = plane[order], d[order]
    theta = d / r
    direction = plane / np.maximum(d, 1e-12)[:, None]
    normal = np.column_stack([np.sin(theta)[:, None] * direction, np.cos(theta)])
    sphere_centre = np.array([box // 2, box // 2, box // 2 + z_offset_px - r])
    centres0 = sphere_centre + r * normal
    poses = np.array([_rotation_to(nv) @ rotation_about_z(azimuth_deg) for nv in normal])
    return centres0 + 1.0, poses


def render_patch(box, centres_1b, poses, lattice_radius_px, z_offset_px=0.0, membrane=0.6):
    """Protein-positive map: unit_map copies at the lattice points + the membrane bilayer above."""
    unit = unit_map(box, PX, SPACING_A)
    vol = np.zeros((box, box, box), np.float32)
    c = box // 2
    for p, q in zip(centres_1b, poses, strict=True):
        t = p - 1.0 - c
        if np.any(np.abs(t) > c + 9):
            continue
        vol += rotate_volume(unit, q.T, -q.T @ t)
    mem = membrane_reference(
        box, PX, z_centre_px=c + z_offset_px + MEMBRANE_OFFSET_A / PX,
        radius_angstrom=lattice_radius_px * PX + MEMBRANE_OFFSET_A,
    )  # fmt: skip
    return vol + membrane * mem


def average_like(protein_positive, rng, noise_sd=0.5, blur_px=0.8, wedge_loss=0.0, cn=None):
    """Tomogram-contrast average: inverted, blurred, noisy (SD relative to the signal's).

    ``wedge_loss``: fraction of the Fourier components of a +-60 degree missing wedge removed
    (an average of particles seen from many directions keeps part of them). ``cn``: symmetrise.
    """
    vol = -scipy.ndimage.gaussian_filter(protein_positive.astype(np.float64), blur_px)
    vol = vol + rng.normal(scale=noise_sd * vol.std(), size=vol.shape)
    if wedge_loss:
        vol = vol - wedge_loss * (vol - apply_wedge(vol, (-60.0, 60.0)))
    if cn is not None:
        vol = symmetrize_cn(vol, cn)
    return vol.astype(np.float32)


def _random_radius_px(rng):
    """Lattice radius (px) of a VLP whose membrane radius is 330-380 Å."""
    return (rng.uniform(330.0, 380.0) - MEMBRANE_OFFSET_A) / PX


def c1_patch(box, seed, wedge_loss=0.0, noise_sd=0.5):
    """A step-3-like C1 average: lattice at a random offset, in-plane angle and height."""
    rng = np.random.default_rng(seed)
    radius = _random_radius_px(rng)
    offset, azimuth, z_off = (
        rng.uniform(-0.5, 0.5, 2) * SPACING_PX,
        rng.uniform(0, 60),
        rng.uniform(-3, 3),
    )
    centres, poses = lattice_patch(box, radius, offset, azimuth, z_off)
    vol = render_patch(box, centres, poses, radius, z_off)
    return average_like(vol, rng, noise_sd=noise_sd, wedge_loss=wedge_loss), centres


def c6_patch(box, seed, noise_sd=1.0, wedge_loss=0.5):
    """A step-5A-like "average of averages": unit at the box centre, noisy, then C6-symmetrised."""
    rng = np.random.default_rng(seed)
    radius = _random_radius_px(rng)
    azimuth, z_off = rng.uniform(0, 60), rng.uniform(-2, 2)
    centres, poses = lattice_patch(box, radius, (0.0, 0.0), azimuth, z_off)
    vol = render_patch(box, centres, poses, radius, z_off)
    return average_like(vol, rng, noise_sd=noise_sd, wedge_loss=wedge_loss, cn=6), centres


def nearest_unit(centres, box):
    """True unit whose axis passes nearest the box centre (in x, y): the one a user marks."""
    return centres[np.argmin(np.linalg.norm(centres[:, :2] - (box // 2 + 1.0), axis=1))]


def recall_precision(found, centres, box, tol=SPACING_PX / 4, margin=SPACING_PX / 3):
    """Precision: found points within ``tol`` of a true unit. Recall: true units at least
    ``margin + tol`` inside the box found within ``tol`` (units straddling the margin may
    legitimately be proposed or not)."""
    d = np.linalg.norm(found[:, None, :] - centres[None, :, :], axis=2)
    inside = np.all((centres - 1 >= margin + tol) & (centres - 1 <= box - 1 - margin - tol), axis=1)
    precision = float(np.mean(d.min(axis=1) < tol))
    recall = float(np.mean(d[:, inside].min(axis=0) < tol))
    matched = d.min(axis=1)[d.min(axis=1) < tol]
    return recall, precision, int(inside.sum()), matched


C1_CASES = [(48, 11, 0.0), (48, 12, 0.5), (48, 13, 0.0), (48, 14, 0.5), (40, 15, 0.5)]
C6_CASES = [(48, 21), (48, 22), (64, 23)]


@pytest.fixture(scope="module")
def c6_maps():
    return {case: c6_patch(*case) for case in C6_CASES}


def test_test_lattice_matches_lattice_unit_centres():
    centres, _ = lattice_patch(48, 50.0, (0.0, 0.0), 17.0)
    expected = lattice_unit_centres(48, SPACING_PX, 50.0, 17.0)
    d = np.linalg.norm(centres[:7, None, :] - expected[None], axis=2)
    assert np.all(d.min(axis=1) < 1e-6)


@pytest.mark.parametrize(("box", "seed", "wedge_loss"), C1_CASES)
def test_reference_center_is_the_unit_nearest_the_box_centre(box, seed, wedge_loss):
    avg, centres = c1_patch(box, seed, wedge_loss)
    found = propose_reference_center(avg, PX)
    assert found.shape == (1, 3)
    err = found[0] - nearest_unit(centres, box)
    print(f"reference centre box {box} seed {seed} wedge_loss {wedge_loss}: error (x, y, z) px "
          f"{np.round(err, 2)}, |error| {np.linalg.norm(err):.2f} px")  # fmt: skip
    assert np.linalg.norm(err) < 1.5


def test_reference_center_protein_sign():
    avg, centres = c1_patch(48, 11)
    a = propose_reference_center(avg, PX)
    b = propose_reference_center(-avg, PX, protein_sign=1.0)
    np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("case", C6_CASES)
def test_unit_centres_recall_and_precision(c6_maps, case):
    avg, centres = c6_maps[case]
    box = case[0]
    found = propose_unit_centres(avg, PX)
    recall, precision, n_true, matched = recall_precision(found, centres, box)
    central_err = np.linalg.norm(found[0] - centres[0])
    print(f"unit centres box {box} seed {case[1]}: {len(found)} proposed, {n_true} true inside, "
          f"recall {recall:.2f}, precision {precision:.2f}, matched error median "
          f"{np.median(matched):.2f} max {matched.max():.2f} px, central {central_err:.2f} px")  # fmt: skip
    assert central_err < 1.5
    assert recall >= 0.85
    assert precision >= 0.9
    assert len(propose_unit_centres(avg, PX, max_units=3)) == 3


@pytest.mark.parametrize("case", C6_CASES[:2])
def test_clicker_finds_the_units_with_its_click_error(c6_maps, case):
    avg, centres = c6_maps[case]
    box = case[0]
    rng = np.random.default_rng(case[1])
    clicks = click_unit_centres(avg, PX, unit_map(box, PX), rng, click_error_px=1.0)
    recall, precision, n_true, matched = recall_precision(clicks, centres, box)
    rms = np.sqrt(np.mean(matched**2))
    print(f"clicker box {box} seed {case[1]}: {len(clicks)} clicks, {n_true} true inside, "
          f"recall {recall:.2f}, precision {precision:.2f}, RMS error {rms:.2f} px (click error 1 px)")  # fmt: skip
    assert recall >= 0.85
    assert precision >= 0.9
    assert 0.3 < rms < 2.0
    assert np.linalg.norm(clicks[0] - centres[0]) < 4.0


def test_clicker_central_only_on_a_c1_average():
    avg, centres = c1_patch(48, 12, 0.5)
    rng = np.random.default_rng(0)
    exact = click_unit_centres(
        avg, PX, unit_map(32, PX), rng, click_error_px=0.0, central_only=True
    )
    err = np.linalg.norm(exact[0] - nearest_unit(centres, 48))
    print(f"clicker central only, no click error: |error| {err:.2f} px")
    assert exact.shape == (1, 3)
    assert err < 1.0


def test_write_clicks_round_trip(tmp_path):
    xyz = np.array([[25.0, 25.0, 24.5], [38.2, 20.1, 22.0]])
    path = tmp_path / "particle_centers.cmm"
    write_clicks(path, xyz, PX, "particle centers")
    df = read_cmm(path)
    assert set(df["set_name"]) == {"particle centers"}
    np.testing.assert_allclose(markers_to_pixels(df, PX), xyz, atol=1e-4)
    with pytest.raises(InputError, match="non-empty"):
        write_clicks(tmp_path / "bad.cmm", np.zeros((0, 3)), PX, "x")


@pytest.mark.parametrize("func", [propose_reference_center, propose_unit_centres])
def test_bad_input(func):
    good = np.random.default_rng(0).normal(size=(32, 32, 32)).astype(np.float32)
    with pytest.raises(InputError, match="cubic"):
        func(good[:, :, :30], PX)
    bad = good.copy()
    bad[3, 4, 5] = np.nan
    with pytest.raises(InputError, match="non-finite"):
        func(bad, PX)
    with pytest.raises(InputError, match="does not fit"):
        func(good, PX, lattice_spacing_angstrom=200.0)
    with pytest.raises(InputError, match="pixel size"):
        func(good, 0.0)
    with pytest.raises(InputError, match="symmetry_order"):
        func(good, PX, symmetry_order=1)
    with pytest.raises(InputError, match="protein_sign"):
        func(good, PX, protein_sign=0.5)


def test_clicker_bad_input():
    good = np.random.default_rng(0).normal(size=(32, 32, 32)).astype(np.float32)
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="cubic"):
        click_unit_centres(good[:-1], PX, unit_map(32, PX), rng)
    with pytest.raises(InputError, match="truth_unit"):
        click_unit_centres(good, PX, np.zeros((8, 8, 9)), rng)
    with pytest.raises(InputError, match="click_error_px"):
        click_unit_centres(good, PX, unit_map(32, PX), rng, click_error_px=-1.0)


def test_masked_ncc_matches_direct_pearson_correlation_including_the_box_edge():
    rng = np.random.default_rng(0)
    vol = rng.normal(size=(20, 20, 20))
    mask = ball_mask(3.2)
    h = (mask.shape[0] - 1) // 2
    template = rng.normal(size=mask.shape)
    ncc, _ = masked_ncc(vol, [template], mask)
    offsets = np.argwhere(mask > 0) - h
    for pos in [(10, 10, 10), (2, 5, 17), (0, 10, 10), (19, 3, 8)]:
        p = offsets + np.array(pos)
        ok = np.all((p >= 0) & (p < 20), axis=1)
        a = vol[tuple(p[ok].T)]
        b = template[tuple((offsets[ok] + h).T)]
        assert ncc[pos] == pytest.approx(np.corrcoef(a, b)[0, 1], abs=1e-9)
