"""Tests for stasnake.io.cmm (Chimera/ChimeraX marker files)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stasnake.errors import InputError
from stasnake.io.cmm import markers_to_pixels, pixels_to_markers, read_cmm, write_cmm

# Hand-written in the layout that ChimeraX's "save markers.cmm" produces (several sets,
# links, note colours, extra attributes) and the Chimera documentation example.
CHIMERAX_CMM = """<marker_sets>
<marker_set name="TS_01 centres">
<marker id="1" x="100.5" y="200" z="-30.25" r="1" g="1" b="0" radius="40" note="vlp A" nr="1" ng="1" nb="1"/>
<marker id="2" x="1.5395" y="16.277" z="-3.0339" r="0" g="1" b="1" radius="0.5" extra="kept"/>
<link id1="1" id2="2" r="1" g="1" b="0" radius="0.17609"/>
</marker_set>
<marker_set name="marker set 2">
<marker id="1" x="-6.1267" y="17.44" z="-3.1338" radius="0.35217"/>
</marker_set>
</marker_sets>
"""


def test_read_chimerax_style(tmp_path):
    p = tmp_path / "m.cmm"
    p.write_text(CHIMERAX_CMM)
    df = read_cmm(p)
    assert len(df) == 3
    assert df["set_name"].tolist() == ["TS_01 centres", "TS_01 centres", "marker set 2"]
    assert df["id"].tolist() == [1, 2, 1]
    assert df.loc[0, ["x_angstrom", "y_angstrom", "z_angstrom"]].tolist() == [100.5, 200, -30.25]
    assert df.loc[0, "note"] == "vlp A" and df.loc[1, "note"] == ""
    assert df.loc[2, ["r", "g", "b"]].tolist() == [1, 1, 0]  # default colour
    assert df.loc[2, "radius_angstrom"] == 0.35217


def test_single_set_root(tmp_path):
    p = tmp_path / "one.cmm"
    p.write_text(
        '<marker_set name="s">\n<marker id="7" x="1" y="2" z="3" radius="4"/>\n</marker_set>\n'
    )
    df = read_cmm(p)
    assert df["id"].tolist() == [7] and df["radius_angstrom"].iloc[0] == 4


def test_round_trip(tmp_path):
    src = tmp_path / "m.cmm"
    src.write_text(CHIMERAX_CMM)
    df = read_cmm(src)
    write_cmm(tmp_path / "rt.cmm", df)
    pd.testing.assert_frame_equal(read_cmm(tmp_path / "rt.cmm"), df)
    single = df.drop(columns="set_name").iloc[:1]
    write_cmm(tmp_path / "one.cmm", single, set_name="vlps")
    text = (tmp_path / "one.cmm").read_text()
    assert text.startswith('<marker_set name="vlps">')
    assert read_cmm(tmp_path / "one.cmm")["set_name"].tolist() == ["vlps"]


def test_pixel_conversion_round_trip():
    rng = np.random.default_rng(3)
    xyz = rng.uniform(1, 500, size=(5, 3))
    origin = (10.0, -5.0, 2.5)
    df = pixels_to_markers(xyz, 5.4, origin)
    np.testing.assert_allclose(markers_to_pixels(df, 5.4, origin), xyz)
    # voxel index 0 (1-based 1) sits at the origin; index i at origin + i * apix
    df0 = pixels_to_markers([[1, 1, 1], [3, 1, 1]], 2.0, origin)
    np.testing.assert_allclose(df0.loc[0, ["x_angstrom", "y_angstrom", "z_angstrom"]], origin)
    assert df0.loc[1, "x_angstrom"] == origin[0] + 2 * 2.0


def test_errors(tmp_path):
    p = tmp_path / "bad.cmm"
    p.write_text('<marker_set name="s">\n<marker id="3" x="1" y="2"/>\n</marker_set>\n')
    with pytest.raises(InputError, match=r"bad.cmm.*marker id 3.*'z'"):
        read_cmm(p)
    p.write_text('<marker_set name="s">\n<marker id="3" x="1" y="2" z="a"/>\n</marker_set>\n')
    with pytest.raises(InputError, match=r"bad.cmm.*marker id 3"):
        read_cmm(p)
    p.write_text('<marker_set name="s">\n</marker_set>\n')
    with pytest.raises(InputError, match=r"bad.cmm.*no markers"):
        read_cmm(p)
    p.write_text('<marker_set name="s">\n<marker id="1" x="1" y="2" z="3">\n')
    with pytest.raises(InputError, match=r"bad.cmm.*malformed"):
        read_cmm(p)
    with pytest.raises(InputError, match="missing.cmm"):
        read_cmm(tmp_path / "missing.cmm")


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    def partial_then_fail(self, text, *args, **kwargs):
        with open(self, "w") as fh:
            fh.write(text[:5])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", partial_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_cmm(tmp_path / "a.cmm", pixels_to_markers([[1, 2, 3]], 1.0))
    assert list(tmp_path.iterdir()) == []
