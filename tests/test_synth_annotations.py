"""Simulated user annotations for the synthetic demo (stasnake.synth.annotations)."""

import json

import numpy as np
import pandas as pd
import pytest

from stasnake.annotations import DIPOLE_COLUMNS
from stasnake.io.cmm import markers_to_pixels, read_cmm
from stasnake.synth.annotations import (
    lattice_unit_centres,
    simulate_dipoles,
    simulate_particle_centers,
    simulate_reference_center,
    write_demo_annotations,
    write_dipoles,
)


def _truth_vlps(n, rng):
    return pd.DataFrame(
        {
            "vlp_id": np.arange(1, n + 1),
            "x": rng.uniform(100, 300, n),
            "y": rng.uniform(100, 300, n),
            "z": rng.uniform(60, 100, n),
            "radius_px": rng.uniform(55, 70, n),
        }
    )


def test_dipole_errors_match_the_requested_amounts():
    rng = np.random.default_rng(1)
    truth = _truth_vlps(4000, rng)
    dip = simulate_dipoles(truth, rng, centre_error_px=5.0, radius_error_px=4.0, binning=2)
    assert list(dip.columns) == list(DIPOLE_COLUMNS)
    centre = dip[["center_x", "center_y", "center_z"]].to_numpy()
    surface = dip[["surface_x", "surface_y", "surface_z"]].to_numpy()
    true_centre = (truth[["x", "y", "z"]].to_numpy() - 1) / 2 + 1
    rms_centre = np.sqrt(np.mean(np.sum((centre - true_centre) ** 2, axis=1)))
    radius_error = np.linalg.norm(surface - centre, axis=1) - truth["radius_px"].to_numpy() / 2
    print(f"centre RMS error {rms_centre:.2f} px, radius error mean {radius_error.mean():.2f} "
          f"std {radius_error.std():.2f} px (binned)")  # fmt: skip
    assert rms_centre == pytest.approx(5.0, rel=0.05)
    assert radius_error.std() == pytest.approx(4.0, rel=0.05)
    assert abs(radius_error.mean()) < 0.3
    np.testing.assert_allclose(surface[:, 2], centre[:, 2])  # clicked in the same z slice
    # errors of zero give the truth exactly
    exact = simulate_dipoles(truth[:5], rng, 0.0, 0.0, binning=1)
    np.testing.assert_allclose(
        exact[["center_x", "center_y", "center_z"]], truth[["x", "y", "z"]][:5]
    )


def test_dipoles_file_format(tmp_path):
    rng = np.random.default_rng(2)
    dip = simulate_dipoles(_truth_vlps(3, rng), rng)
    path = tmp_path / "TS_01" / "dipoles.csv"
    write_dipoles(path, dip, binning=2)
    lines = path.read_text().splitlines()
    assert lines[0] == "# binning: 2"
    assert lines[1] == ",".join(DIPOLE_COLUMNS) + ",binning"
    back = pd.read_csv(path, comment="#")
    np.testing.assert_allclose(back[list(DIPOLE_COLUMNS)].to_numpy(), dip.to_numpy(), atol=0.006)
    # the workflow's reader takes the file: full-size coordinates, radius of the clicks
    from stasnake.picking.dipoles import read_dipoles

    full = read_dipoles(path, binning_expected=2)
    np.testing.assert_allclose(full["center_x"], (dip["center_x"].round(2) - 1) * 2 + 1, atol=1e-9)
    radius = np.linalg.norm(dip[["surface_x", "surface_y", "surface_z"]].to_numpy()
                            - dip[["center_x", "center_y", "center_z"]].to_numpy(), axis=1)  # fmt: skip
    np.testing.assert_allclose(full["radius_px"], 2 * radius, atol=0.05)


def test_unit_centres_geometry():
    flat = lattice_unit_centres(32, 13.9)
    np.testing.assert_allclose(flat[0], [17, 17, 17])
    d = np.linalg.norm(flat[1:] - flat[0], axis=1)
    np.testing.assert_allclose(d, 13.9)
    np.testing.assert_allclose(flat[1], [17 + 13.9, 17, 17])  # first neighbour along +x
    curved = lattice_unit_centres(32, 13.9, lattice_radius_px=50.0, azimuth_deg=30.0)
    np.testing.assert_allclose(np.linalg.norm(curved[1:] - curved[0], axis=1), 13.9)
    sphere_centre = curved[0] - [0, 0, 50.0]
    np.testing.assert_allclose(np.linalg.norm(curved - sphere_centre, axis=1), 50.0)
    assert np.all(curved[1:, 2] < 17)


def test_marker_click_errors():
    rng = np.random.default_rng(3)
    clicks = np.vstack(
        [simulate_reference_center(32, rng, click_error_px=1.5) for _ in range(3000)]
    )
    rms = np.sqrt(np.mean(np.sum((clicks - 17.0) ** 2, axis=1)))
    print(f"reference-centre click RMS error {rms:.3f} px")
    assert rms == pytest.approx(1.5, rel=0.05)
    units = simulate_particle_centers(32, 13.9, rng, click_error_px=1.0)
    assert units.shape == (7, 3)
    assert np.all(np.linalg.norm(units - lattice_unit_centres(32, 13.9), axis=1) < 5)


@pytest.fixture(scope="module")
def fake_dataset(tmp_path_factory):
    """The truth files write_demo_annotations reads, as generate_dataset writes them."""
    root = tmp_path_factory.mktemp("synth")
    rng = np.random.default_rng(4)
    manifest = {
        "pixel_size_angstrom": 5.4,
        "unit_box_px": 32,
        "config": {"lattice_spacing_angstrom": 75.0},
        "tiltseries": [{"name": "TS_01"}, {"name": "TS_02"}],
    }
    (root / "truth").mkdir()
    (root / "truth" / "manifest.json").write_text(json.dumps(manifest))
    for name in ("TS_01", "TS_02"):
        (root / "truth" / name).mkdir()
        vlps = _truth_vlps(3, rng).assign(lattice_radius_px=lambda d: d["radius_px"] - 16.7)
        vlps.to_csv(root / "truth" / name / "vlps.csv", index=False)
    return root


def test_demo_annotations_land_only_in_the_requested_folder(fake_dataset, tmp_path):
    before = sorted(p.relative_to(fake_dataset) for p in fake_dataset.rglob("*"))
    out = tmp_path / "demo_annotations"
    written = write_demo_annotations(fake_dataset, out, seed=5)
    assert sorted(p.relative_to(fake_dataset) for p in fake_dataset.rglob("*")) == before
    assert sorted(
        p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()
    ) == [
        "demo_annotations/TS_01/dipoles.csv",
        "demo_annotations/TS_02/dipoles.csv",
        "demo_annotations/particle_centers.cmm",
        "demo_annotations/reference_center.cmm",
    ]
    assert len(written) == 4
    dip = pd.read_csv(out / "TS_02" / "dipoles.csv", comment="#")
    assert len(dip) == 3

    ref = read_cmm(out / "reference_center.cmm")
    assert len(ref) == 1
    ref_px = markers_to_pixels(ref, 5.4)
    print("reference centre (1-based px):", ref_px)
    assert np.linalg.norm(ref_px[0] - 17.0) < 5
    units = read_cmm(out / "particle_centers.cmm")
    units_px = markers_to_pixels(units, 5.4)
    assert len(units) == 7
    spacing = np.linalg.norm(units_px[1:] - units_px[0], axis=1)
    print("neighbour distances (px):", np.round(spacing, 2), "lattice spacing", 75 / 5.4)
    assert np.all(np.abs(spacing - 75 / 5.4) < 5)
    # same seed, same clicks
    again = write_demo_annotations(fake_dataset, tmp_path / "again", seed=5)
    assert [p.read_text() for p in again] == [p.read_text() for p in written]


def test_not_a_dataset(tmp_path):
    from stasnake.errors import InputError

    with pytest.raises(InputError, match="manifest.json"):
        write_demo_annotations(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
