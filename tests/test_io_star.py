"""Tests for stasnake.io.star (RELION STAR files via starfile)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stasnake.errors import InputError
from stasnake.io.star import (
    read_relion_particles,
    read_relion_tomograms,
    read_star,
    require_columns,
    write_star,
)

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
REAL = REALDATA / "relion_star"
EDGE = REAL / "starfile_tests"

EDGE_BLOCKS = {
    "basic_double_quote.star": [""],
    "basic_single_quote.star": [""],
    "empty_loop.star": [""],
    "loop_double_quote.star": [""],
    "loop_single_quote.star": [""],
    "one_loop.star": [""],
    "rln3.1_data_style.star": ["block_1", "block_2", "block_3"],
    "single_line_end_of_multiblock.star": ["block_1", "block_2"],
    "single_line_middle_of_multiblock.star": ["block_1", "block_2"],
    "two_basic_blocks.star": ["block_0", "block_1"],
    "two_single_line_loop_blocks.star": ["block_0", "block_1"],
}


def test_every_real_star_parses():
    files = sorted(REAL.rglob("*.star"))
    files += sorted((REALDATA / "dynamo" / "relion2dynamo").glob("*.star"))
    files += [REALDATA / "dynamo" / "dynamo2m" / "example.star"]
    assert len(files) > 50
    for f in files:
        blocks = read_star(f)
        assert blocks and all(isinstance(b, pd.DataFrame) for b in blocks.values()), f


@pytest.mark.parametrize(("name", "block_names"), sorted(EDGE_BLOCKS.items()))
def test_starfile_edge_cases(name, block_names):
    blocks = read_star(EDGE / name)
    assert list(blocks) == block_names


def test_edge_case_contents():
    quoted = read_star(EDGE / "basic_double_quote.star")[""]
    assert quoted["quote_string"].iloc[0] == "quote string"
    assert read_star(EDGE / "empty_loop.star")[""].shape == (0, 1)
    assert read_star(EDGE / "loop_single_quote.star")[""].shape == (2, 8)
    assert read_star(EDGE / "two_basic_blocks.star")["block_0"]["val2"].iloc[0] == 2.0


def test_relion31_particles():
    optics, particles = read_relion_particles(REAL / "dynamo2m_hiv_tutorial" / "relion3.1.star")
    assert len(particles) == 57 and optics is not None and len(optics) == 1
    assert particles.attrs["coordinates"] == "pixels"
    assert optics["rlnImagePixelSize"].iloc[0] == 5.0
    assert particles["rlnAngleTilt"].between(141.8, 176.2).all()


def test_relion4_particles_and_warp():
    optics, particles = read_relion_particles(REALDATA / "dynamo" / "relion2dynamo" / "4_1.star")
    assert len(particles) == 6396 and particles["rlnTomoName"].str.startswith("Position_").all()
    optics, particles = read_relion_particles(REALDATA / "dynamo" / "relion2dynamo" / "refine.star")
    assert len(particles) == 300 and optics["rlnTomoTiltSeriesPixelSize"].iloc[0] == pytest.approx(
        1.329
    )
    optics, particles = read_relion_particles(REALDATA / "dynamo" / "dynamo2m" / "example.star")
    assert optics is None and len(particles) == 1399
    assert particles["rlnMicrographName"].nunique() == 47


def test_relion5_particles_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    particles = pd.DataFrame(
        {
            "rlnTomoName": ["1", "1", "TS_03"],
            "rlnCenteredCoordinateXAngst": rng.normal(size=3) * 100,
            "rlnCenteredCoordinateYAngst": rng.normal(size=3) * 100,
            "rlnCenteredCoordinateZAngst": [0.0, 1.0, -2.5],
            "rlnAngleRot": [10.0, 20.0, 30.0],
            "rlnOpticsGroup": [1, 1, 1],
        }
    )
    optics = pd.DataFrame(
        {
            "rlnOpticsGroup": [1],
            "rlnOpticsGroupName": ["opticsGroup1"],
            "rlnTomoTiltSeriesPixelSize": [1.35],
            "rlnImageSize": [64],
        }
    )
    general = {"rlnTomoSubTomosAre2DStacks": 1}
    out = tmp_path / "particles.star"
    write_star(out, {"general": general, "optics": optics, "particles": particles})
    o2, p2 = read_relion_particles(out)
    assert p2.attrs["coordinates"] == "centered_angstrom"
    assert p2["rlnTomoName"].tolist() == ["1", "1", "TS_03"]  # names stay strings
    pd.testing.assert_frame_equal(p2, particles, check_dtype=False, rtol=1e-8)
    assert p2["rlnCenteredCoordinateZAngst"].dtype == np.float64
    assert p2["rlnOpticsGroup"].dtype == np.int64
    pd.testing.assert_frame_equal(o2, optics, check_dtype=False)
    assert read_star(out)["general"]["rlnTomoSubTomosAre2DStacks"].iloc[0] == 1


def test_relion5_tomograms():
    df = read_relion_tomograms(
        REAL / "pytom_match_pick_relion5_example" / "Tomograms" / "job009" / "tomograms.star"
    )
    assert len(df) == 10
    assert df["rlnTomoTiltSeriesPixelSize"].iloc[0] == pytest.approx(1.724)
    assert df["rlnTomoTomogramBinning"].iloc[0] == pytest.approx(8.12, abs=0.01)
    assert (df["rlnTomoSizeX"].iloc[0], df["rlnTomoSizeY"].iloc[0], df["rlnTomoSizeZ"].iloc[0]) == (
        4000,
        4000,
        2000,
    )


def test_missing_columns_errors(tmp_path):
    with pytest.raises(InputError, match=r"tilt_series.star.*data_global.*rlnTomoSizeX"):
        read_relion_tomograms(REAL / "relion5_tutorial_TomoBabel" / "Import" / "tilt_series.star")
    p = tmp_path / "nocoords.star"
    write_star(p, {"particles": pd.DataFrame({"rlnTomoName": ["a"], "rlnCoordinateX": [1.0]})})
    with pytest.raises(InputError, match=r"nocoords.star.*data_particles.*rlnCoordinateY"):
        read_relion_particles(p)
    write_star(p, {"particles": pd.DataFrame({"rlnCoordinateX": [1.0], "rlnCoordinateY": [1.0]})})
    with pytest.raises(InputError, match=r"nocoords.star.*rlnTomoName"):
        read_relion_particles(p)
    df = pd.DataFrame({"a": [1]})
    with pytest.raises(InputError, match=r"x.star: block data_b lacks column\(s\) c, d"):
        require_columns(df, ["a", "c", "d"], "x.star", "b")


def test_read_errors(tmp_path):
    with pytest.raises(InputError, match="missing.star"):
        read_star(tmp_path / "missing.star")
    p = tmp_path / "bad.star"
    p.write_text("data_\n\nloop_\n_rlnA #1\n_rlnB #2\n1 2\n3\n")
    with pytest.raises(InputError, match="bad.star.*too few fields"):
        read_star(p)
    p.write_text("just some text\n")
    with pytest.raises(InputError, match="bad.star"):
        read_star(p)


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    import starfile

    def partial_then_fail(data, filename, **kwargs):
        Path(filename).write_text("data_\n")
        raise OSError("disk full")

    monkeypatch.setattr(starfile, "write", partial_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_star(tmp_path / "a.star", {"x": pd.DataFrame({"a": [1]})})
    assert list(tmp_path.iterdir()) == []
