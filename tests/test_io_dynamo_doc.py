"""Tests for stasnake.io.dynamo_doc (.doc table maps, .vll volume lists)."""

from pathlib import Path

import pytest

from stasnake.errors import InputError
from stasnake.io.dynamo_doc import read_doc, read_vll, write_doc, write_vll
from stasnake.io.dynamo_table import read_table

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "dynamo"


def test_doc_real_tab():
    m = read_doc(REAL / "dynamotable" / "tmap_complex.doc")
    assert len(m) == 48
    assert m[1] == "tomo_ts01.mrc_15.00Apx.mrc"


def test_doc_real_spaces_joins_table():
    m = read_doc(REAL / "dynamo2m" / "example.doc")
    assert len(m) == 54
    assert m[3].endswith("/reconstruction/tomo_ts03.mrc_15.00Apx.mrc")
    assert m[3].startswith("/media/")
    table = read_table(REAL / "dynamo2m" / "example.tbl")
    assert set(table["tomo"]) <= set(m)


def test_doc_round_trip(tmp_path):
    m = {2: "b dir/tomo 2.mrc", 1: "a.mrc", 10: "/abs/c.rec"}
    write_doc(tmp_path / "m.doc", m)
    assert read_doc(tmp_path / "m.doc") == m


def test_doc_errors(tmp_path):
    p = tmp_path / "bad.doc"
    p.write_text("1 a.mrc\nx b.mrc\n")
    with pytest.raises(InputError, match="bad.doc.*line 2.*integer"):
        read_doc(p)
    p.write_text("1 a.mrc\n1 b.mrc\n")
    with pytest.raises(InputError, match="bad.doc.*twice"):
        read_doc(p)
    p.write_text("1 a.mrc\n2\n")
    with pytest.raises(InputError, match="bad.doc.*line 2"):
        read_doc(p)
    with pytest.raises(InputError, match="missing.doc"):
        read_doc(tmp_path / "missing.doc")


def test_vll_styles(tmp_path):
    # layouts written by public scripts for Dynamo catalogues (TomoBEAR, shell scripts)
    p = tmp_path / "cat.vll"
    p.write_text(
        "/data/TS_01/TS_01.mrc\n* index = 1\n* label = TS_01\n* apix = 5.4\n* ytilt = -60 60\n"
        "* ftype = 1\n\n"
        "TS_03/TS_03_Are.mrc\r\n* apix = 5.4000;\r\n* ytilt = -57.00 60.00;\r\n* xtilt = 0 0;\r\n"
        "tomo3.mrc\n"
    )
    entries = read_vll(p)
    assert len(entries) == 3
    assert entries[0] == {
        "path": "/data/TS_01/TS_01.mrc",
        "index": 1,
        "label": "TS_01",
        "apix": 5.4,
        "ytilt": (-60, 60),
        "ftype": 1,
    }
    assert entries[1]["apix"] == 5.4 and entries[1]["ytilt"] == (-57.0, 60.0)
    assert entries[1]["xtilt"] == (0, 0)
    assert entries[2] == {"path": "tomo3.mrc"}


def test_vll_round_trip(tmp_path):
    entries = [
        {"path": "t1.mrc", "index": 1, "apix": 1.35, "ytilt": (-60.0, 60.0), "ftype": 1},
        {"path": "dir/t 2.mrc", "label": "second"},
    ]
    write_vll(tmp_path / "a.vll", entries)
    text = (tmp_path / "a.vll").read_text()
    assert "* apix = 1.35\n" in text and "* ytilt = -60.0 60.0\n" in text
    assert read_vll(tmp_path / "a.vll") == entries


def test_vll_errors(tmp_path):
    p = tmp_path / "bad.vll"
    p.write_text("* apix = 1\nt.mrc\n")
    with pytest.raises(InputError, match="bad.vll.*line 1.*before any"):
        read_vll(p)
    p.write_text("t.mrc\n* apix 1\n")
    with pytest.raises(InputError, match="bad.vll.*line 2"):
        read_vll(p)
    p.write_text("\n\n")
    with pytest.raises(InputError, match="bad.vll.*empty"):
        read_vll(p)


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    def partial_then_fail(self, text, *args, **kwargs):
        with open(self, "w") as fh:
            fh.write(text[:3])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", partial_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_doc(tmp_path / "a.doc", {1: "a.mrc"})
    with pytest.raises(OSError, match="disk full"):
        write_vll(tmp_path / "a.vll", [{"path": "a.mrc"}])
    assert list(tmp_path.iterdir()) == []
