"""Tests for stasnake.io.mdoc (SerialEM .mdoc)."""

from pathlib import Path

import mdocfile
import numpy as np
import pandas as pd
import pytest

from stasnake.errors import InputError
from stasnake.io.mdoc import read_mdoc, write_mdoc

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "mdoc"
TS01 = REAL / "TS_01.mrc.mdoc"
TS01_LF = REAL / "teamtomo_mdocfile_LF" / "tilt_series.mdoc"


def test_ts01_real():
    header, df = read_mdoc(TS01)
    assert len(df) == 41
    assert df["ZValue"].tolist() == list(range(41))
    assert header["PixelSpacing"] == 5.4
    assert header["ImageSize"] == (924, 958)
    assert header["TiltAxisAngle"] == 85.3
    assert len(header["titles"]) == 2
    assert df["TiltAngle"].iloc[39] == pytest.approx(-60, abs=0.01)
    assert df["TiltAngle"].iloc[40] == pytest.approx(60, abs=0.01)
    assert df["TiltAngle"].iloc[:3].round().tolist() == [0, 3, -3]
    assert (df["ExposureDose"] == 0).all()
    assert df["NumSubFrames"].dtype == np.int64 and (df["NumSubFrames"] == 8).all()
    assert df["ImageShift"].iloc[0] == (-0.0108126, -0.121079)
    assert df["DateTime"].iloc[0] == "30-Nov-15  15:21:38"
    assert df["SubFramePath"].iloc[0].endswith("TS_01_000_0.0.mrc")


def test_crlf_and_lf_identical():
    assert b"\r\n" in TS01.read_bytes() and b"\r\n" not in TS01_LF.read_bytes()
    h1, d1 = read_mdoc(TS01)
    h2, d2 = read_mdoc(TS01_LF)
    assert h1 == h2
    pd.testing.assert_frame_equal(d1, d2)


def test_frame_set_multiple_skips_frameset():
    header, df = read_mdoc(REAL / "frame_set_multiple.mdoc")
    assert len(df) == 20
    assert header["Voltage"] == 300
    assert header["skipped_sections"] == {"FrameSet": 1}
    assert "TiltAxisAngle" not in header


def test_frame_set_single_is_not_a_tilt_series():
    with pytest.raises(InputError, match="frame_set_single.mdoc.*no \\[ZValue\\]"):
        read_mdoc(REAL / "frame_set_single.mdoc")


def test_montage_refused_unless_allowed():
    path = REAL / "montage_section.mdoc"
    with pytest.raises(InputError, match="montage_section.mdoc.*montage"):
        read_mdoc(path)
    header, df = read_mdoc(path, allow_montage=True)
    assert len(df) == 62
    assert header["skipped_sections"] == {"MontSection": 1}
    assert header["TiltAxisAngle"] == -86.7


def test_round_trip_real(tmp_path):
    header, df = read_mdoc(TS01)
    out = tmp_path / "rt.mdoc"
    write_mdoc(out, header, df)
    h2, d2 = read_mdoc(out)
    assert h2 == header
    pd.testing.assert_frame_equal(d2, df)
    # the mdocfile package reads our output like the original
    a, b = mdocfile.read(TS01), mdocfile.read(out)
    for col in ["ZValue", "TiltAngle", "PixelSpacing", "ExposureDose", "ImageShift", "DateTime"]:
        assert a[col].tolist() == b[col].tolist()


def test_round_trip_synthetic(tmp_path):
    tilts = np.array([0.0, 3.0, -3.0, -6.0, 6.0])
    df = pd.DataFrame(
        {
            "ZValue": np.arange(5),
            "TiltAngle": tilts,
            "ExposureDose": np.full(5, 3.0),
            "PixelSpacing": 1.35,
            "TargetDefocus": -4.0,
            "ImageShift": [(0.1, -0.2)] * 5,
            "SubFramePath": [f"frames/TS_01_{i:03d}.tif" for i in range(5)],
            "NumSubFrames": 8,
        }
    )
    header = {
        "PixelSpacing": 1.35,
        "ImageSize": (128, 96),
        "DataMode": 2,
        "Voltage": 300,
        "TiltAxisAngle": 85.0,
    }
    out = tmp_path / "syn.mdoc"
    write_mdoc(out, header, df)
    h2, d2 = read_mdoc(out)
    assert h2["TiltAxisAngle"] == 85.0 and h2["ImageSize"] == (128, 96)
    pd.testing.assert_frame_equal(d2, df)
    m = mdocfile.read(out)
    assert m["TiltAngle"].tolist() == tilts.tolist()


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="nope.mdoc"):
        read_mdoc(tmp_path / "nope.mdoc")


def test_no_tilt_angle(tmp_path):
    p = tmp_path / "bad.mdoc"
    p.write_text(
        "PixelSpacing = 1\n\n[ZValue = 0]\nTiltAngle = 0\n\n[ZValue = 1]\nExposureDose = 3\n"
    )
    with pytest.raises(InputError, match=r"bad.mdoc.*ZValue = 1.*TiltAngle"):
        read_mdoc(p)


def test_no_sections_and_bad_line(tmp_path):
    p = tmp_path / "empty.mdoc"
    p.write_text("PixelSpacing = 1\n")
    with pytest.raises(InputError, match="empty.mdoc"):
        read_mdoc(p)
    p.write_text("[ZValue = 0]\nTiltAngle = 0\ngarbage line\n")
    with pytest.raises(InputError, match="empty.mdoc.*line 3"):
        read_mdoc(p)


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    def partial_then_fail(self, text, *args, **kwargs):
        with open(self, "w") as fh:
            fh.write(text[:10])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", partial_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_mdoc(tmp_path / "x.mdoc", {}, pd.DataFrame({"TiltAngle": [0.0, 3.0]}))
    assert list(tmp_path.iterdir()) == []
