from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stasnake.errors import InputError
from stasnake.io.ctffind import ctf_table_to_imod_defocus, read_ctffind_txt, write_ctffind_txt
from stasnake.io.imod import read_defocus, write_defocus

REAL = Path("/work/shared/realdata/ctffind/aspire/diagnostic_output.txt")


@pytest.mark.skipif(not REAL.is_file(), reason="real CTFFIND sample not available")
def test_read_real_ctffind_output():
    df = read_ctffind_txt(REAL)
    assert len(df) == 1 and df.micrograph.iloc[0] == 1
    assert df.defocus_1_angstrom.iloc[0] == pytest.approx(9982.502930)
    assert df.defocus_2_angstrom.iloc[0] == pytest.approx(9982.502930)
    assert df.cross_correlation.iloc[0] == pytest.approx(0.565683)
    assert df.fit_resolution_angstrom.iloc[0] == pytest.approx(1.980663)
    assert len(df.attrs["header"]) == 5


def _table():
    return pd.DataFrame({
        "tilt_angle_deg": [-3.0, 0.0, 3.0], "defocus_u_angstrom": [30100.5, 30050.25, 29900.0],
        "defocus_v_angstrom": [29800.0, 29700.125, 29650.0], "astigmatism_angle_deg": [10.0, 120.5, 170.0],
        "score": [0.31, 0.42, 0.29], "fit_resolution_angstrom": [12.5, 11.0, 14.25],
    })  # fmt: skip


def test_write_read_round_trip(tmp_path):
    tab = _table()
    write_ctffind_txt(tmp_path / "d.txt", tab, 5.4, 300, 2.7, 0.1)
    lines = (tmp_path / "d.txt").read_text().splitlines()
    assert sum(ln.startswith("#") for ln in lines) == 5 and len(lines) == 8
    back = read_ctffind_txt(tmp_path / "d.txt")
    np.testing.assert_array_equal(back.micrograph, [1, 2, 3])
    np.testing.assert_allclose(back.defocus_1_angstrom, tab.defocus_u_angstrom, atol=1e-5)
    np.testing.assert_allclose(back.defocus_2_angstrom, tab.defocus_v_angstrom, atol=1e-5)
    np.testing.assert_allclose(back.astigmatism_azimuth_deg, tab.astigmatism_angle_deg, atol=1e-5)
    np.testing.assert_allclose(back.cross_correlation, tab.score, atol=1e-6)
    np.testing.assert_allclose(back.fit_resolution_angstrom, tab.fit_resolution_angstrom, atol=1e-6)
    np.testing.assert_allclose(back.phase_shift_rad, 0.0)


def test_bad_file_raises(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("# header\n1 2 3\n")
    with pytest.raises(InputError, match="line 2"):
        read_ctffind_txt(p)
    with pytest.raises(InputError, match="does not exist"):
        read_ctffind_txt(tmp_path / "missing.txt")


def test_imod_defocus_conversion_round_trips_through_write_defocus(tmp_path):
    rows = ctf_table_to_imod_defocus(_table())
    np.testing.assert_array_equal(rows.view_start, [1, 2, 3])
    np.testing.assert_allclose(rows.defocus1_nm, [3010.05, 3005.025, 2990.0])
    np.testing.assert_allclose(rows.astigmatism_angle_deg, [100.0, 30.5, 80.0])  # CTFFIND + 90, mod 180
    write_defocus(tmp_path / "a.defocus", rows)
    back = read_defocus(tmp_path / "a.defocus")
    np.testing.assert_allclose(back.defocus2_nm, rows.defocus2_nm, atol=0.006)
    np.testing.assert_allclose(back.astigmatism_angle_deg, rows.astigmatism_angle_deg, atol=1e-3)
    same = ctf_table_to_imod_defocus(_table(), imod_angle_offset_deg=0.0)
    np.testing.assert_allclose(same.astigmatism_angle_deg, _table().astigmatism_angle_deg)
