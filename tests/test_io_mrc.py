"""Tests for stasnake.io.mrc."""

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from stasnake.errors import InputError
from stasnake.io.mrc import MrcSlabWriter, read_mrc, read_mrc_header, write_mrc

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def test_round_trip_non_cubic(tmp_path):
    vol = np.random.default_rng(0).normal(size=(3, 5, 7)).astype(np.float32)
    write_mrc(tmp_path / "v.mrc", vol, 1.35)
    data, apix = read_mrc(tmp_path / "v.mrc")
    np.testing.assert_array_equal(data, vol)
    assert apix == pytest.approx(1.35)
    h = read_mrc_header(tmp_path / "v.mrc")
    assert h["shape"] == (3, 5, 7) and h["dtype"] == "float32" and not h["is_stack"]
    with mrcfile.open(tmp_path / "v.mrc") as mrc:
        assert (mrc.header.nx, mrc.header.ny, mrc.header.nz) == (7, 5, 3)


def test_stack_float16_and_mmap(tmp_path):
    stack = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    write_mrc(tmp_path / "s.mrcs", stack, 5.4, dtype="float16", stack=True)
    h = read_mrc_header(tmp_path / "s.mrcs")
    assert h["is_stack"] and h["dtype"] == "float16"
    data, _ = read_mrc(tmp_path / "s.mrcs", mmap=True)
    np.testing.assert_array_equal(np.asarray(data, np.float32), stack)
    with pytest.raises(ValueError):
        write_mrc(tmp_path / "x.mrc", stack, 1.0, dtype="int8")


def test_slab_writer(tmp_path):
    with MrcSlabWriter(tmp_path / "t.mrc", (4, 3, 2), 2.0) as w:
        for z in range(4):
            w.data[z] = z
    data, apix = read_mrc(tmp_path / "t.mrc")
    assert apix == 2.0 and data[3].max() == 3
    with pytest.raises(RuntimeError):
        with MrcSlabWriter(tmp_path / "u.mrc", (2, 2, 2), 1.0) as w:
            raise RuntimeError("fail")
    assert not (tmp_path / "u.mrc").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.mrc"]


def test_real_mask_without_map_id():
    # written by an old tool: no "MAP " ID string; mrcfile's strict mode refuses it
    data, apix = read_mrc(REAL / "maps_models" / "pytom" / "human_ribo_mask_32_8_5.mrc")
    assert data.shape == (32, 32, 32) and apix == 1.0
    assert 0 <= data.min() and data.max() <= 1


def test_header_only_real_file():
    path = REAL / "maps_models" / "pytom" / "header_only.mrc"
    for call in (read_mrc, read_mrc_header):
        with pytest.raises(InputError, match="header_only.mrc"):
            call(path)


def test_truncated_and_garbage(tmp_path):
    write_mrc(tmp_path / "v.mrc", np.ones((8, 8, 8), np.float32), 1.0)
    cut = tmp_path / "cut.mrc"
    cut.write_bytes((tmp_path / "v.mrc").read_bytes()[:1500])
    for mmap in (False, True):
        with pytest.raises(InputError, match="cut.mrc"):
            read_mrc(cut, mmap=mmap)
    garbage = tmp_path / "garbage.mrc"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 255, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(InputError, match="garbage.mrc"):
        read_mrc(garbage)
    with pytest.raises(InputError, match="missing.mrc"):
        read_mrc(tmp_path / "missing.mrc")


def test_etomo_stub_header():
    h = read_mrc_header(REAL / "imod" / "etomofiles_TS_001" / "TS_001.st")
    assert h["shape"] == (40, 1, 1)


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    def failing(self, data):
        raise OSError("disk full")

    monkeypatch.setattr(mrcfile.mrcfile.MrcFile, "set_data", failing)
    with pytest.raises(OSError, match="disk full"):
        write_mrc(tmp_path / "v.mrc", np.zeros((2, 2, 2)), 1.0)
    assert list(tmp_path.iterdir()) == []


def test_slab_writer_header_statistics_match_mrcfile(tmp_path):
    """Slab-wise header statistics equal mrcfile's whole-volume ones."""
    rng = np.random.default_rng(5)
    volume = rng.normal(3.0, 2.0, size=(37, 20, 24)).astype(np.float32)
    path = tmp_path / "slabs.mrc"
    with MrcSlabWriter(path, volume.shape, 2.5) as writer:
        writer.data[:] = volume
    with mrcfile.open(path) as mrc:
        header = mrc.header
        assert float(header.dmin) == pytest.approx(volume.min())
        assert float(header.dmax) == pytest.approx(volume.max())
        assert float(header.dmean) == pytest.approx(volume.mean(dtype=np.float64), rel=1e-6)
        assert float(header.rms) == pytest.approx(volume.std(dtype=np.float64), rel=1e-5)
