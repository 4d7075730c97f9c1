"""Tests for stasnake.io.imod (.tlt, .xf, .defocus)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stasnake.errors import InputError
from stasnake.io.imod import (
    read_defocus,
    read_tlt,
    read_xf,
    write_defocus,
    write_tlt,
    write_xf,
    xf_from_rotation,
    xf_tilt_axis_angle_deg,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "imod"
TS03 = REAL / "cets_imod_TS_03"
PMP = REAL / "pytom_match_pick"


def test_tlt_real():
    t = read_tlt(TS03 / "TS_03.tlt", n_expected=40)
    assert t.shape == (40,) and t[0] == -57 and t[-1] == 60
    dose = read_tlt(TS03 / "TS_03.tlt", column=1)
    assert sorted(dose)[:3] == [3, 6, 9]
    single = read_tlt(PMP / "test_angles.rawtlt")
    multi = read_tlt(PMP / "test_angles_multi_column.rawtlt")
    np.testing.assert_array_equal(single, multi)
    assert single[0] == -51
    raw = read_tlt(REAL / "etomofiles_TS_001" / "TS_001.rawtlt")
    ali = read_tlt(REAL / "etomofiles_TS_001" / "TS_001.tlt")
    assert ali[0] == pytest.approx(raw[0] + 2.88, abs=0.1)
    xtilt = read_tlt(REAL / "etomofiles_TS_001" / "TS_001.xtilt")
    assert xtilt.shape == (40,) and set(np.round(xtilt, 2)) <= {0.0, -0.01}


def test_tlt_errors(tmp_path):
    with pytest.raises(InputError, match="TS_03.tlt.*expected 41"):
        read_tlt(TS03 / "TS_03.tlt", n_expected=41)
    p = tmp_path / "bad.tlt"
    p.write_text("1.0\nabc\n")
    with pytest.raises(InputError, match="bad.tlt.*line 2"):
        read_tlt(p)
    with pytest.raises(InputError, match="missing.tlt"):
        read_tlt(tmp_path / "missing.tlt")


def test_tlt_round_trip(tmp_path):
    tilts = np.arange(-60, 61, 3.0)
    write_tlt(tmp_path / "a.tlt", tilts)
    np.testing.assert_array_equal(read_tlt(tmp_path / "a.tlt"), tilts)
    write_tlt(tmp_path / "b.tlt", [1.23456], decimals=4)
    assert read_tlt(tmp_path / "b.tlt")[0] == 1.2346


def test_xf_real():
    xf = read_xf(TS03 / "TS_03.xf", n_expected=40)
    assert xf.shape == (40, 6)
    axis = xf_tilt_axis_angle_deg(xf)
    assert axis.mean() == pytest.approx(85.26, abs=0.01)
    assert 85.08 < axis.min() and axis.max() < 85.47
    np.testing.assert_allclose(xf[:, 0] * xf[:, 3] - xf[:, 1] * xf[:, 2], 1, atol=1e-5)
    assert xf_tilt_axis_angle_deg(read_xf(REAL / "yaiw" / "xf_file.xf")).mean() == pytest.approx(
        85.29, abs=0.01
    )
    etomo = xf_tilt_axis_angle_deg(read_xf(REAL / "etomofiles_TS_001" / "TS_001.xf"))
    assert etomo.mean() == pytest.approx(84.17, abs=0.01)


def test_xf_round_trip_and_format(tmp_path):
    rng = np.random.default_rng(0)
    xf = xf_from_rotation(rng.uniform(-180, 180, 7), rng.uniform(-500, 500, (7, 2)))
    write_xf(tmp_path / "a.xf", xf)
    lines = (tmp_path / "a.xf").read_text().splitlines()
    assert all(len(ln) == 72 for ln in lines)
    back = read_xf(tmp_path / "a.xf", n_expected=7)
    np.testing.assert_allclose(back, xf, atol=1e-3)
    np.testing.assert_allclose(xf_tilt_axis_angle_deg(back), xf_tilt_axis_angle_deg(xf), atol=1e-4)


def test_xf_touching_fixed_width_fields(tmp_path):
    p = tmp_path / "wide.xf"
    p.write_text("   1.0000000   0.0000000   0.0000000   1.0000000-1234567.891     -10.000\n")
    np.testing.assert_allclose(read_xf(p)[0], [1, 0, 0, 1, -1234567.891, -10])


def test_xf_errors(tmp_path):
    with pytest.raises(InputError, match="TS_03.xf.*40 xf lines, expected 41"):
        read_xf(TS03 / "TS_03.xf", n_expected=41)
    p = tmp_path / "bad.xf"
    p.write_text("1 0 0 1 0 0\n1 0 0 1 0\n")
    with pytest.raises(InputError, match="bad.xf.*line 2.*5 fields"):
        read_xf(p)


def test_defocus_v2_real_matches_list():
    df = read_defocus(PMP / "test_imod.defocus")
    ref = np.loadtxt(PMP / "test_defocus.txt")
    assert df.attrs["version"] == 2
    np.testing.assert_array_equal(df["defocus1_nm"].to_numpy(), ref)
    assert df["view_start"].iloc[0] == 1 and df["tilt_start_deg"].iloc[0] == -50.99
    plain = read_defocus(TS03 / "TS_03_plain_estimation.defocus")
    assert len(plain) == 40 and plain["defocus1_nm"].iloc[0] == 1360
    assert plain["defocus2_nm"].isna().all()


@pytest.mark.parametrize(
    ("name", "flags", "first"),
    [
        ("only_astigmatism", 1, [1651.6, 1206.7, 31.76, np.nan, np.nan]),
        ("only_phase_shift", 4, [1323.6, np.nan, np.nan, 10.19, np.nan]),
        ("astigmatism_and_phase_shift", 5, [1483.9, 1068.7, 32.44, 26.49, np.nan]),
        ("astigmatism_phase_shift_and_cutoff_freq", 37, [1331.4, 917.5, 32.43, 29.08, 0.4912]),
    ],
)
def test_defocus_v3_real(name, flags, first, tmp_path):
    df = read_defocus(TS03 / f"TS_03_{name}.defocus")
    assert df.attrs == {"version": 3, "flags": flags}
    assert len(df) == 40
    np.testing.assert_array_equal(df.iloc[0, 4:].to_numpy(dtype=float), first)
    write_defocus(tmp_path / "rt.defocus", df)
    back = read_defocus(tmp_path / "rt.defocus")
    assert back.attrs == df.attrs
    pd.testing.assert_frame_equal(back, df, atol=1e-3)


def test_defocus_write_v2_and_v3_plain(tmp_path):
    df = pd.DataFrame(
        {
            "view_start": [1, 2],
            "view_end": [1, 2],
            "tilt_start_deg": [-3.0, 0.0],
            "tilt_end_deg": [-3.0, 0.0],
            "defocus1_nm": [2500.0, 2512.5],
        }
    )
    for version in (2, 3):
        write_defocus(tmp_path / "a.defocus", df, version=version)
        back = read_defocus(tmp_path / "a.defocus")
        assert back.attrs["version"] == version and back.attrs["flags"] == 0
        pd.testing.assert_frame_equal(back[df.columns], df)


def test_defocus_errors(tmp_path):
    p = tmp_path / "bad.defocus"
    p.write_text("1\t0\t0.0\t0.0\t0.0\t3\n1\t1\t-57\t-57\t1651.6\t1206.7\n")
    with pytest.raises(InputError, match="bad.defocus.*line 2.*expected 7"):
        read_defocus(p)
    p.write_text("1 1 -57 -57 1360 2\n2 2 -54 -54\n")
    with pytest.raises(InputError, match="bad.defocus.*line 2"):
        read_defocus(p)
    p.write_text("1 2 3\n")
    with pytest.raises(InputError, match="bad.defocus.*line 1"):
        read_defocus(p)


def test_atomic_write_failure_leaves_nothing(tmp_path, monkeypatch):
    def partial_then_fail(self, text, *args, **kwargs):
        with open(self, "w") as fh:
            fh.write(text[:5])
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", partial_then_fail)
    for call in (
        lambda: write_tlt(tmp_path / "a.tlt", [0.0]),
        lambda: write_xf(tmp_path / "a.xf", [[1, 0, 0, 1, 0, 0]]),
        lambda: write_defocus(tmp_path / "a.defocus", read_defocus(PMP / "test_imod.defocus")),
    ):
        with pytest.raises(OSError, match="disk full"):
            call()
    assert list(tmp_path.iterdir()) == []
