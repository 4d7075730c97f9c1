"""Tests for stasnake.io.em (TOM/Dynamo .em)."""

from pathlib import Path

import emfile
import mrcfile
import numpy as np
import pytest

from stasnake.errors import InputError
from stasnake.io.em import read_em, read_em_header, write_em

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.mark.parametrize(("name", "dtype"), [("int2.em", np.int16), ("int4.em", np.float32)])
def test_pytom_small(name, dtype):
    data, header = read_em(REAL / "dynamo" / "pytom_em" / name)
    assert data.shape == (1, 64, 64) and data.dtype == dtype
    assert header["machine"] == 6 and not data.any()


def test_real_maps():
    ribo, h = read_em(REAL / "maps_models" / "pytom" / "human_ribo_21A.em")
    assert ribo.shape == (32, 32, 32) and ribo.dtype == np.float32
    emd, _ = read_em(REAL / "maps_models" / "pytom" / "emd_1480.map.em_bin_4.em")
    assert emd.shape == (42, 42, 42)
    assert emd.mean() == pytest.approx(0.178, abs=1e-3)
    assert emd.std() == pytest.approx(0.939, abs=1e-3)
    _, ref = emfile.read(REAL / "maps_models" / "pytom" / "emd_1480.map.em_bin_4.em")
    np.testing.assert_array_equal(emd, ref)
    mm, _ = read_em(REAL / "maps_models" / "pytom" / "emd_1480.map.em_bin_4.em", mmap=True)
    np.testing.assert_array_equal(np.asarray(mm), emd)


def test_axis_order_non_cubic(tmp_path):
    rng = np.random.default_rng(1)
    vol = rng.normal(size=(3, 5, 7)).astype(np.float32)  # (z, y, x)
    write_em(tmp_path / "v.em", vol, pixel_size_angstrom=1.35, comment="test")
    back, header = read_em(tmp_path / "v.em")
    np.testing.assert_array_equal(back, vol)
    assert header["shape"] == (3, 5, 7) and header["pixel_size_angstrom"] == 1.35
    assert header["comment"] == "test"
    raw = (tmp_path / "v.em").read_bytes()
    assert np.frombuffer(raw[4:16], "<i4").tolist() == [7, 5, 3]  # nx, ny, nz
    # x fastest: the first values in the file are vol[0, 0, :]
    np.testing.assert_array_equal(np.frombuffer(raw[512 : 512 + 28], "<f4"), vol[0, 0, :])
    # emfile and mrcfile agree on (z, y, x)
    _, via_emfile = emfile.read(tmp_path / "v.em")
    np.testing.assert_array_equal(via_emfile, vol)
    with mrcfile.new(tmp_path / "v.mrc") as mrc:
        mrc.set_data(vol)
    with mrcfile.open(tmp_path / "v.mrc") as mrc:
        np.testing.assert_array_equal(mrc.data, back)
        assert mrc.header.nx == 7 and mrc.header.nz == 3
    # and a file written by emfile reads back the same
    emfile.write(tmp_path / "e.em", vol)
    np.testing.assert_array_equal(read_em(tmp_path / "e.em")[0], vol)


def test_big_endian_and_dtypes(tmp_path):
    vol = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    header = np.zeros(512, np.uint8)
    header[0], header[3] = 3, 2  # SGI big-endian, int16
    header[4:16] = np.frombuffer(np.array([4, 3, 2], ">i4").tobytes(), np.uint8)
    (tmp_path / "be.em").write_bytes(header.tobytes() + vol.astype(">i2").tobytes())
    back, h = read_em(tmp_path / "be.em")
    np.testing.assert_array_equal(back, vol)
    for dt in (np.int8, np.int32, np.float64, np.complex64):
        write_em(tmp_path / "d.em", vol.astype(dt))
        back, _ = read_em(tmp_path / "d.em")
        assert back.dtype == dt
        np.testing.assert_array_equal(back, vol.astype(dt))
    write_em(tmp_path / "img.em", np.ones((3, 4)))
    assert read_em(tmp_path / "img.em")[0].shape == (1, 3, 4)


def test_errors(tmp_path):
    vol = np.zeros((4, 4, 4), np.float32)
    write_em(tmp_path / "t.em", vol)
    cut = tmp_path / "cut.em"
    cut.write_bytes((tmp_path / "t.em").read_bytes()[:600])
    with pytest.raises(InputError, match="cut.em.*truncated"):
        read_em(cut)
    short = tmp_path / "short.em"
    short.write_bytes(b"\x06\x00\x00\x05" + b"\x00" * 20)
    with pytest.raises(InputError, match="short.em"):
        read_em_header(short)
    garbage = tmp_path / "garbage.em"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 255, 2000, dtype=np.uint8).tobytes())
    garbage.write_bytes(b"\x07" + garbage.read_bytes()[1:])
    with pytest.raises(InputError, match="garbage.em.*machine"):
        read_em(garbage)
    with pytest.raises(InputError, match="missing.em"):
        read_em(tmp_path / "missing.em")


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    # the header is written first, then the data conversion fails: mid-write
    def failing(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "ascontiguousarray", failing)
    with pytest.raises(OSError, match="disk full"):
        write_em(tmp_path / "x.em", np.zeros((2, 2, 2), np.float32))
    assert list(tmp_path.iterdir()) == []
