"""FSC, resolution rules (RELION examples), masks and plots."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.fft
import starfile

from stasnake.sta.fsc import (
    fourier_shell_correlation,
    fsc_table_from_relion,
    plot_fsc,
    resolution_at,
    soft_spherical_mask,
)

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def test_fsc_of_a_map_with_itself_is_one():
    rng = np.random.default_rng(9)
    m = rng.standard_normal((32, 32, 32)).astype(np.float32)
    tab = fourier_shell_correlation(m, m, pixel_size_angstrom=2.0)
    assert list(tab.columns) == ["shell", "frequency_per_A", "resolution_A", "fsc", "n_voxels"]
    assert len(tab) == 17
    np.testing.assert_allclose(tab["fsc"], 1.0, atol=1e-5)
    assert tab["resolution_A"].iloc[-1] == pytest.approx(4.0)  # Nyquist = 2 * pixel size
    assert tab["frequency_per_A"].iloc[8] == pytest.approx(8 / 64.0)
    assert resolution_at(tab) == pytest.approx(4.0)  # never crosses: Nyquist


def test_fsc_of_independent_noise_scatters_as_one_over_sqrt_n():
    rng = np.random.default_rng(10)
    n = 48
    a = rng.standard_normal((n, n, n)).astype(np.float32)
    b = rng.standard_normal((n, n, n)).astype(np.float32)
    tab = fourier_shell_correlation(a, b).iloc[4:]
    # Friedel mates are not independent: n_voxels / 2 independent samples per shell
    z = tab["fsc"] * np.sqrt(tab["n_voxels"] / 2.0)
    assert abs(tab["fsc"].mean()) < 0.02
    assert 0.7 < z.std() < 1.3
    assert abs(z.mean()) < 0.5


def test_low_pass_copy_crosses_at_the_cut_off():
    rng = np.random.default_rng(11)
    n, apix, cut = 48, 3.0, 12
    x = rng.standard_normal((n, n, n)).astype(np.float32)
    f = np.fft.fftfreq(n) * n
    r = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + np.arange(n // 2 + 1)[None, None, :] ** 2)
    lp = scipy.fft.irfftn(scipy.fft.rfftn(x) * (r < cut), s=x.shape)
    y = lp + 0.05 * rng.standard_normal(x.shape)
    tab = fourier_shell_correlation(x, y, pixel_size_angstrom=apix)
    assert (tab["fsc"].iloc[1:cut - 1] > 0.9).all()
    assert (tab["fsc"].iloc[cut + 1:].abs() < 0.2).all()
    res = resolution_at(tab, 0.5)
    assert n * apix / (cut + 1) <= res <= n * apix / (cut - 1)


@pytest.mark.parametrize(
    ("rel", "relion", "interp"),
    [("fsc/abtt/postprocess.star", 2.845333, 2.834),
     ("fsc/starfile_tests/postprocess.star", 16.363636, 16.106)],
)
def test_relion_postprocess_resolution(rel, relion, interp):
    path = REALDATA / rel
    if not path.exists():
        pytest.skip(f"{path} not available")
    star = starfile.read(path)
    tab = fsc_table_from_relion(star["fsc"])
    assert resolution_at(tab, 0.143, method="relion") == pytest.approx(relion, abs=1e-4)
    assert resolution_at(tab, 0.143, method="relion") == pytest.approx(
        star["general"]["rlnFinalResolution"], abs=1e-4)
    assert resolution_at(tab, 0.143) == pytest.approx(interp, abs=2e-3)


def test_resolution_edge_cases():
    import pandas as pd

    tab = pd.DataFrame({"shell": [0, 1, 2, 3], "frequency_per_A": [0, 0.1, 0.2, 0.3],
                        "fsc": [1.0, 0.1, 0.05, 0.0]})
    assert resolution_at(tab) == np.inf
    tab["fsc"] = [1.0, 0.9, np.nan, 0.0]  # NaN shell skipped: interpolate between 0.1 and 0.3
    assert resolution_at(tab, 0.5) == pytest.approx(1 / (0.1 + 0.4 / 0.9 * 0.2))
    with pytest.raises(ValueError):
        resolution_at(tab, method="gold")


def test_soft_spherical_mask():
    m = soft_spherical_mask(32, 8, 4)
    assert m.shape == (32, 32, 32) and m.dtype == np.float32
    assert m[16, 16, 16] == 1.0 and m[16, 16, 16 + 8] == 1.0
    assert m[16, 16, 16 + 10] == pytest.approx(0.5)
    assert m[16, 16, 16 + 12] == 0.0 and m[0, 0, 0] == 0.0
    assert soft_spherical_mask(16, 4, 0).sum() == np.sum(
        np.sum((np.mgrid[0:16, 0:16, 0:16] - 8) ** 2, axis=0) <= 16)


def test_masked_fsc_and_plot(tmp_path):
    rng = np.random.default_rng(12)
    s = rng.standard_normal((32, 32, 32))
    a = s + 0.5 * rng.standard_normal(s.shape)
    b = s + 0.5 * rng.standard_normal(s.shape)
    mask = soft_spherical_mask(32, 10, 3)
    tab = fourier_shell_correlation(a, b, pixel_size_angstrom=1.5, mask=mask)
    assert tab["fsc"].iloc[1:].between(0.5, 0.95).all()
    path = tmp_path / "fsc.png"
    plot_fsc({"half maps": tab, "other": tab.assign(fsc=tab["fsc"] * 0.5)}, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_describe_resolution_says_when_nyquist_is_not_reached():
    from stasnake.sta.fsc import describe_resolution

    table = pd.DataFrame({"shell": [0, 1, 2, 3], "frequency_per_A": [0.0, 0.1, 0.2, 0.3],
                          "resolution_A": [np.inf, 10.0, 5.0, 10 / 3], "fsc": [1.0, 0.9, 0.6, 0.4]})  # fmt: skip
    assert describe_resolution(table, 0.143) == "beyond Nyquist (3.33 Å)"
    assert describe_resolution(table, 0.5).endswith("Å") and "Nyquist" not in describe_resolution(table, 0.5)
