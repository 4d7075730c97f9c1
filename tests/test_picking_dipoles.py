"""Dipole annotation files: format, binning conversion, and errors naming file and VLP."""

import numpy as np
import pandas as pd
import pytest

from stasnake.errors import InputError
from stasnake.picking.dipoles import (
    binned_to_full,
    dipoles_from_spheres,
    full_to_binned,
    read_dipoles,
    write_dipoles,
)

HEADER = "center_x,center_y,center_z,surface_x,surface_y,surface_z,binning\n"


def _write(tmp_path, text, name="dipoles.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_binning_conversion_keeps_voxel_zero_and_scales():
    full = binned_to_full([[1.0, 1.0, 1.0], [2.0, 11.0, 5.5]], 2)
    assert np.allclose(full, [[1.0, 1.0, 1.0], [3.0, 21.0, 10.0]])
    assert np.allclose(full_to_binned(full, 2), [[1.0, 1.0, 1.0], [2.0, 11.0, 5.5]])
    assert np.allclose(binned_to_full([[7.0, 8.0, 9.0]], 1), [[7.0, 8.0, 9.0]])


def test_read_converts_to_full_size_with_radius_and_keeps_extras(tmp_path):
    text = (
        "# TS_01, bin 2\n"
        + HEADER.strip()
        + ",note\n51,41,21,61,41,21,2,big\n\n11,11,11,11,14,15,1,\n"
    )
    df = read_dipoles(_write(tmp_path, text))
    assert list(df.vlp) == [1, 2]
    assert np.allclose(df[["center_x", "center_y", "center_z"]].iloc[0], [101, 81, 41])
    assert np.allclose(df[["surface_x", "surface_y", "surface_z"]].iloc[0], [121, 81, 41])
    assert np.allclose(df.radius_px, [20.0, 5.0])
    assert list(df.binning) == [2, 1]
    assert df.note.iloc[0] == "big"


def test_write_read_round_trip(tmp_path):
    spheres = dipoles_from_spheres([[101.0, 81.0, 41.0], [31.0, 41.0, 21.0]], [40.0, 22.0])
    spheres["score"] = [50.0, 20.0]
    path = tmp_path / "proposals" / "dipoles.csv"
    write_dipoles(path, spheres, binning=2, comment="proposals\nfrom the autopilot")
    text = path.read_text()
    assert text.startswith("# proposals\n# from the autopilot\ncenter_x,")
    back = read_dipoles(path, binning_expected=2)
    cols = ["center_x", "center_y", "center_z", "surface_x", "surface_y", "surface_z", "radius_px"]
    assert np.allclose(back[cols].to_numpy(float), spheres[cols].to_numpy(float))
    assert np.allclose(back.score.astype(float), [50.0, 20.0])
    assert np.allclose(pd.read_csv(path, comment="#").center_x, [51.0, 16.0])


@pytest.mark.parametrize(
    "body, words",
    [
        ("", ["empty"]),
        (HEADER, ["no VLPs"]),
        ("center_x,center_y,center_z,surface_x,surface_y,binning\n1,2,3,4,5,1\n", ["surface_z"]),
        (
            HEADER + "10,10,10,30,10,10,2\n10,10,10,10,10,10,2\n",
            ["VLP 2", "surface point is on the centre"],
        ),
        (
            HEADER + "10,10,10,30,10,10,2\n10,10,,30,10,10,2\n",
            ["VLP 2", "center_z", "not a number"],
        ),
        (HEADER + "10,10,10,30,10,10,2\n10,10,10,abc,10,10,2\n", ["VLP 2", "surface_x", "'abc'"]),
        (HEADER + "10,10,10,30,10,10,2\n10,10,10,nan,10,10,2\n", ["VLP 2", "surface_x"]),
        (HEADER + "10,10,10,30,10,10,1.5\n", ["VLP 1", "binning 1.5"]),
        (HEADER + "10,10,10,30,10,10,0\n", ["VLP 1", "binning"]),
        (HEADER + "10,10,10,30,10,10,2\n10,10,10,30,10,10,4\n", ["VLP 2", "binned by 2"]),
    ],
)
def test_bad_files_name_file_and_vlp(tmp_path, body, words):
    path = _write(tmp_path, body)
    with pytest.raises(InputError) as err:
        read_dipoles(path, binning_expected=2)
    assert str(path) in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_dipoles(tmp_path / "nope.csv")
