"""Tests for stasnake.io.dynamo_table."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stasnake.errors import InputError
from stasnake.io.dynamo_table import COLUMNS, new_table, particle_positions, read_table, write_table

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "dynamo"


def test_real_tables():
    t = read_table(REAL / "dynamotable" / "t_double.tbl")
    assert t.shape == (300, 35)
    c = read_table(REAL / "dynamotable" / "t_complex.tbl")
    assert c.shape == (8742, 41) and np.isfinite(c["daxis"]).all()
    e = read_table(REAL / "dynamo2m" / "example.tbl")
    assert e.shape == (4934, 35) and e["tag"].dtype == np.int64
    assert (e["ftype"] == 1).all() and (e["ymintilt"] == -60).all() and (e["ymaxtilt"] == 60).all()
    a = read_table(REAL / "abtt" / "dynamotable.tbl")
    assert a.shape == (100, 35)


def test_relion2dynamo_pair():
    tbl = read_table(REAL / "relion2dynamo" / "4_1.tbl")
    assert tbl.shape == (6396, 42)


def test_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    t = new_table(
        5, x=rng.uniform(1, 100, 5), tdrot=rng.uniform(-180, 180, 5), tomo=[1, 1, 2, 2, 3]
    )
    write_table(tmp_path / "t.tbl", t)
    back = read_table(tmp_path / "t.tbl")
    assert list(back.columns) == list(COLUMNS)
    pd.testing.assert_frame_equal(back, t, rtol=1e-7)
    real = read_table(REAL / "dynamotable" / "t_double.tbl")
    write_table(tmp_path / "r.tbl", real)
    pd.testing.assert_frame_equal(read_table(tmp_path / "r.tbl")[real.columns], real, rtol=1e-7)


def test_positions():
    t = new_table(2, x=[1.0, 2.0], y=3.0, z=4.0, dx=[0.5, 0.0])
    np.testing.assert_array_equal(particle_positions(t), [[1.5, 3, 4], [2, 3, 4]])
    np.testing.assert_array_equal(particle_positions(t, apply_shifts=False)[0], [1, 3, 4])


def test_errors(tmp_path):
    p = tmp_path / "bad.tbl"
    p.write_text(" ".join(["1"] * 35) + "\n" + " ".join(["1"] * 34) + "\n")
    with pytest.raises(InputError, match="bad.tbl.*row 2.*34 columns"):
        read_table(p)
    p.write_text(" ".join(["1"] * 10) + "\n")
    with pytest.raises(InputError, match="bad.tbl.*at least 26"):
        read_table(p)
    p.write_text(" ".join(["1"] * 34 + ["abc"]) + "\n")
    with pytest.raises(InputError, match="bad.tbl.*column 35"):
        read_table(p)
    with pytest.raises(InputError, match="missing.tbl"):
        read_table(tmp_path / "missing.tbl")
    with pytest.raises(KeyError):
        new_table(1, bogus=1)


def test_empty_file(tmp_path):
    (tmp_path / "e.tbl").write_text("")
    assert len(read_table(tmp_path / "e.tbl")) == 0


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    def partial_then_fail(self, text, *args, **kwargs):
        with open(self, "w") as fh:
            fh.write(text[:5])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", partial_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_table(tmp_path / "t.tbl", new_table(3))
    assert list(tmp_path.iterdir()) == []
