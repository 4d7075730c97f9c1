"""Dynamo table <-> RELION particle conversions, checked against the public converters and real files."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile

from stasnake.errors import InputError
from stasnake.geometry.euler import dynamo_euler_to_matrix, relion_euler_to_matrix
from stasnake.geometry.relion import relion_particles_to_table, table_to_relion_particles
from stasnake.io.dynamo_table import new_table, read_table, write_table

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
TOMOS = {1: "TS_01", 3: "TS_03", 43: "TS_43"}


def _angle_deg(a, b):
    d = np.linalg.norm(np.asarray(a) - np.asarray(b), axis=(-2, -1))
    return np.degrees(2 * np.arcsin(np.clip(d / (2 * np.sqrt(2)), 0, 1)))


def _wrap(d):
    return (np.asarray(d) + 180.0) % 360.0 - 180.0


def _random_table(n=500, seed=0):
    rng = np.random.default_rng(seed)
    e = rng.uniform(-180, 180, size=(n, 3))
    e[:, 1] = np.degrees(np.arccos(rng.uniform(-1, 1, n)))
    return new_table(
        n, tdrot=e[:, 0], tilt=e[:, 1], narot=e[:, 2],
        x=rng.uniform(1, 900, n), y=rng.uniform(1, 900, n), z=rng.uniform(1, 400, n),
        dx=rng.uniform(-3, 3, n), dy=rng.uniform(-3, 3, n), dz=rng.uniform(-3, 3, n),
        tomo=rng.choice(list(TOMOS), n), reg=rng.integers(1, 9, n),
    )  # fmt: skip


def test_matches_dynamo2relion(tmp_path):
    from dynamo2relion.dynamo2relion import dynamo2relion_cli

    table = _random_table()
    tbl = tmp_path / "in.tbl"
    write_table(tbl, table)
    table = read_table(tbl)  # what the converter sees (8 significant digits)
    ts_dir = tmp_path / "tilt_series"
    for name in TOMOS.values():
        (ts_dir / name).mkdir(parents=True)
    out = tmp_path / "theirs.star"
    dynamo2relion_cli(
        dynamo_table_file=tbl, relion_star_file=out, tilt_series_directory=ts_dir, binning=2.0
    )
    theirs = starfile.read(out)
    ours = table_to_relion_particles(table, TOMOS, 1.35, version=4, binning=2.0)["particles"]
    for a in "XYZ":
        np.testing.assert_allclose(
            ours[f"rlnCoordinate{a}"], theirs[f"rlnCoordinate{a}"], rtol=0, atol=1e-6
        )
    cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    assert (
        _angle_deg(
            relion_euler_to_matrix(ours[cols].to_numpy()),
            relion_euler_to_matrix(theirs[cols].to_numpy()),
        ).max()
        < 1e-4
    )
    assert np.abs(_wrap(ours[cols].to_numpy() - theirs[cols].to_numpy())).max() < 1e-4
    assert (ours["rlnTomoName"] == theirs["rlnTomoName"]).all()
    assert (ours["rlnObjectNumber"].to_numpy() == theirs["rlnObjectNumber"].to_numpy()).all()
    # and the pose is the table's pose
    assert _angle_deg(relion_euler_to_matrix(ours[cols].to_numpy()),
                      dynamo_euler_to_matrix(table[["tdrot", "tilt", "narot"]].to_numpy())).max() < 1e-6  # fmt: skip


def test_matches_relion2dynamo_with_origins(tmp_path):
    from relion2dynamo.relion2dynamo import relion2dynamo_cli

    rng = np.random.default_rng(1)
    blocks = table_to_relion_particles(_random_table(seed=1), TOMOS, 1.35, version=4)
    parts = blocks["particles"]
    for a in "XYZ":
        parts[f"rlnOrigin{a}Angst"] = rng.uniform(-5, 5, len(parts))
    parts["rlnClassNumber"] = rng.integers(1, 4, len(parts))
    star = tmp_path / "in.star"
    starfile.write(blocks, star)
    blocks = starfile.read(star)
    out = tmp_path / "theirs.tbl"
    relion2dynamo_cli(relion_star_file=star, dynamo_table_file=out)
    theirs = read_table(out)
    ours, tomo_map = relion_particles_to_table(blocks["particles"], blocks["optics"])
    assert tomo_map == TOMOS
    for c in ("x", "y", "z"):
        np.testing.assert_allclose(
            ours[c], theirs[c], rtol=0, atol=1e-4
        )  # their file keeps 8 digits
    cols = ["tdrot", "tilt", "narot"]
    assert (
        _angle_deg(
            dynamo_euler_to_matrix(ours[cols].to_numpy()),
            dynamo_euler_to_matrix(theirs[cols].to_numpy()),
        ).max()
        < 1e-4
    )
    assert np.abs(_wrap(ours[cols].to_numpy() - theirs[cols].to_numpy())).max() < 1e-4
    for c in ("tomo", "reg", "class"):
        assert (ours[c].to_numpy() == theirs[c].to_numpy()).all()


def test_real_pair_4_1():
    blocks = starfile.read(REALDATA / "dynamo" / "relion2dynamo" / "4_1.star")
    tbl = read_table(REALDATA / "dynamo" / "relion2dynamo" / "4_1.tbl")
    assert len(tbl) == 6396
    names = blocks["particles"]["rlnTomoName"].unique()
    numbers = {
        nm: int(nm.split("_")[1]) for nm in names
    }  # relion2dynamo's rule; not one-to-one here
    ours, tomo_map = relion_particles_to_table(
        blocks["particles"], blocks["optics"], tomo_numbers=numbers
    )
    np.testing.assert_allclose(
        ours[["x", "y", "z"]].to_numpy(), tbl[["x", "y", "z"]].to_numpy(), atol=1e-6
    )
    assert (ours["tomo"].to_numpy() == tbl["tomo"].to_numpy()).all()
    assert tomo_map[86] == "Position_86_4"
    cols = ["tdrot", "tilt", "narot"]
    assert (
        _angle_deg(
            dynamo_euler_to_matrix(ours[cols].to_numpy()),
            dynamo_euler_to_matrix(tbl[cols].to_numpy()),
        ).max()
        < 1e-3
    )
    # and back: RELION angles from the table, rot = narot - 90, psi = tdrot + 90
    back = table_to_relion_particles(tbl, tomo_map, 1.17, version=4)["particles"]
    rel = blocks["particles"]
    default, default_map = relion_particles_to_table(rel, blocks["optics"])  # one number per name
    assert len(default_map) == 50 and default["tomo"].nunique() == 50
    for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"):
        assert np.abs(_wrap(back[c].to_numpy() - rel[c].to_numpy())).max() < 1e-3
    for a in "XYZ":
        np.testing.assert_allclose(back[f"rlnCoordinate{a}"], rel[f"rlnCoordinate{a}"], atol=1e-6)
    np.testing.assert_allclose(_wrap(rel["rlnAngleRot"] - (tbl["narot"] - 90)), 0, atol=1e-3)
    np.testing.assert_allclose(_wrap(rel["rlnAnglePsi"] - (tbl["tdrot"] + 90)), 0, atol=1e-3)


def test_read_relion4_refine_with_origins():
    blocks = starfile.read(REALDATA / "dynamo" / "relion2dynamo" / "refine.star")
    parts, optics = blocks["particles"], blocks["optics"]
    table, tomo_map = relion_particles_to_table(parts, optics)
    assert len(table) == 300 and len(tomo_map) == 1
    apix = float(optics["rlnTomoTiltSeriesPixelSize"].iloc[0])
    np.testing.assert_allclose(
        table["x"], parts["rlnCoordinateX"] - parts["rlnOriginXAngst"] / apix
    )
    np.testing.assert_allclose(table["apix"], 1.329)
    assert (table[["dx", "dy", "dz"]].to_numpy() == 0).all()


def test_read_warp_star_without_tomo_name():
    df = starfile.read(REALDATA / "dynamo" / "dynamo2m" / "example.star")
    table, tomo_map = relion_particles_to_table(df, None)
    assert len(table) == 1399 and len(tomo_map) == 47
    np.testing.assert_allclose(table["x"], df["rlnCoordinateX"])
    assert np.isnan(table["apix"]).sum() == 0 and (table["apix"] == 0).all()


def test_relion5_round_trip_and_centre():
    table = _random_table(seed=2)
    sizes = {name: (928, 928, 464) for name in TOMOS.values()}
    blocks = table_to_relion_particles(
        table, TOMOS, 1.35, version=5, tomogram_sizes_xyz=sizes, half_sets=True
    )
    parts = blocks["particles"]
    assert {"rlnCenteredCoordinateXAngst", "rlnTomoParticleName", "rlnRandomSubset"} <= set(
        parts.columns
    )
    assert "rlnCoordinateX" not in parts.columns
    assert set(parts["rlnRandomSubset"]) == {1, 2}
    back, tomo_map = relion_particles_to_table(parts, blocks["optics"], tomogram_sizes_xyz=sizes)
    assert tomo_map == TOMOS
    centre = table[["x", "y", "z"]].to_numpy() + table[["dx", "dy", "dz"]].to_numpy()
    np.testing.assert_allclose(back[["x", "y", "z"]].to_numpy(), centre, atol=1e-9)
    # the tomogram centre voxel (0-based 464, 464, 232) is at 0 Å
    one = new_table(1, x=465.0, y=465.0, z=233.0, tomo=1)
    p = table_to_relion_particles(one, TOMOS, 1.35, version=5, tomogram_sizes_xyz=sizes)[
        "particles"
    ]
    np.testing.assert_allclose(p[["rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst",
                                  "rlnCenteredCoordinateZAngst"]].to_numpy(), 0.0)  # fmt: skip


def test_relion4_zero_based_option_round_trip():
    table = _random_table(n=20, seed=3)
    blocks = table_to_relion_particles(table, TOMOS, 1.35, version=4, match_public_converters=False)
    parts = blocks["particles"]
    np.testing.assert_allclose(parts["rlnCoordinateX"], table["x"] + table["dx"] - 1)
    back, _ = relion_particles_to_table(parts, blocks["optics"], match_public_converters=False)
    np.testing.assert_allclose(back["x"], table["x"] + table["dx"])


def test_subtomogram_angles_compose():
    parts = pd.DataFrame({
        "rlnTomoName": ["TS_01"], "rlnCoordinateX": [100.0], "rlnCoordinateY": [100.0], "rlnCoordinateZ": [50.0],
        "rlnOriginXAngst": [2.0], "rlnOriginYAngst": [0.0], "rlnOriginZAngst": [0.0],
        "rlnAngleRot": [10.0], "rlnAngleTilt": [20.0], "rlnAnglePsi": [30.0],
        "rlnTomoSubtomogramRot": [0.0], "rlnTomoSubtomogramTilt": [0.0], "rlnTomoSubtomogramPsi": [90.0],
        "rlnTomoTiltSeriesPixelSize": [2.0],
    })  # fmt: skip
    table, _ = relion_particles_to_table(parts, None)
    a_sub = relion_euler_to_matrix([0.0, 0.0, 90.0])
    expected = a_sub @ relion_euler_to_matrix([10.0, 20.0, 30.0])
    assert (
        _angle_deg(
            dynamo_euler_to_matrix(table[["tdrot", "tilt", "narot"]].to_numpy()[0]), expected
        )
        < 1e-9
    )
    np.testing.assert_allclose(
        table[["x", "y", "z"]].to_numpy()[0], [100.0, 100.0, 50.0] - a_sub @ [1.0, 0.0, 0.0]
    )


@pytest.mark.parametrize("drop, message", [
    (["rlnTomoName"], "rlnTomoName"),
    (["rlnCoordinateY"], "rlnCoordinateY"),
    (["rlnAnglePsi"], "rlnAnglePsi"),
])  # fmt: skip
def test_missing_columns_are_named(drop, message):
    blocks = table_to_relion_particles(_random_table(n=3), TOMOS, 1.35, version=4)
    with pytest.raises(InputError, match=message):
        relion_particles_to_table(
            blocks["particles"].drop(columns=drop), blocks["optics"], source="p.star"
        )


def test_relion5_needs_sizes_and_pixel_size():
    sizes = {name: (100, 100, 50) for name in TOMOS.values()}
    blocks = table_to_relion_particles(
        _random_table(n=3), TOMOS, 1.35, version=5, tomogram_sizes_xyz=sizes
    )
    with pytest.raises(InputError, match="tomogram sizes"):
        relion_particles_to_table(blocks["particles"], blocks["optics"])
    with pytest.raises(InputError, match="rlnTomoTiltSeriesPixelSize"):
        relion_particles_to_table(blocks["particles"], None, tomogram_sizes_xyz=sizes)
    with pytest.raises(InputError, match="tomogram_sizes_xyz"):
        table_to_relion_particles(_random_table(n=3), TOMOS, 1.35, version=5)
