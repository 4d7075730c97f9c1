"""Crop-table preparation: positions inside the tomogram, rows of a table shared by several tomograms."""

import numpy as np
import pytest

from stasnake.errors import InputError
from stasnake.io.dynamo_table import new_table
from stasnake.sta.tables import prepare_crop_table, rows_of_tomogram


def shared_table():
    table = new_table(6, tomo=[1, 2, 1, 3, 2, 1])
    table[["x", "y", "z"]] = 10.0
    return table


def test_rows_of_a_tomogram_are_picked_by_tomo_number():
    rows = rows_of_tomogram(shared_table(), 1, [1, 2, 3])
    assert rows["tag"].tolist() == [1, 3, 6]
    assert rows_of_tomogram(shared_table(), 2, [1, 2, 3])["tag"].tolist() == [2, 5]


def test_a_tomo_number_without_tilt_series_names_the_row():
    with pytest.raises(InputError) as err:
        rows_of_tomogram(shared_table(), 1, [1, 2], source="all.tbl")
    message = str(err.value)
    assert "all.tbl" in message and "row 4 (tag 4) has tomo 3" in message and "[1, 2]" in message


def test_a_particle_outside_the_tomogram_names_the_row():
    table = shared_table()
    table.loc[2, "x"] = 500.0
    with pytest.raises(InputError, match=r"crop.tbl.*row 3 \(tag 3\)"):
        prepare_crop_table(table, 1, (64, 128, 128), 5.4, (-60.0, 60.0), source="crop.tbl")
    ok = prepare_crop_table(shared_table(), 7, (64, 128, 128), 5.4, (-57.0, 60.0))
    assert (ok.tomo == 7).all() and np.allclose(ok[["ymintilt", "ymaxtilt"]], [-57.0, 60.0])
