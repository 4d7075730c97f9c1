import dataclasses
from pathlib import Path

import numpy as np
import pytest

from stasnake.synth import SynthConfig, acquisition_order, tilt_angles
from stasnake.synth.phantom import place_fiducials, place_vlps, render_specimen
from stasnake.synth.tiltseries import (
    ICE_MOLECULES_PER_A3,
    WATER_SCATTERING_AMPLITUDE_ANGSTROM,
    _filtered_projections,
    aligned_to_raw,
    ice_phase_psd,
    interaction_constant,
    raw_to_aligned,
    simulate_tiltseries,
    xf_matrices,
)
from stasnake.synth.unit import unit_map
from stasnake.tilt.ctf import ctf_2d
from stasnake.tilt.project import project_volume

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def _mdoc_tilts(path):
    zs, tilts = [], []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("[ZValue"):
            zs.append(int(line.split("=")[1].strip(" ]")))
        elif line.startswith("TiltAngle"):
            tilts.append(float(line.split("=")[1]))
    return np.array(zs), np.array(tilts)


def test_dose_symmetric_order_matches_real_ts01():
    path = REALDATA / "mdoc" / "TS_01.mrc.mdoc"
    if not path.exists():
        pytest.skip("real data not available")
    zs, tilts = _mdoc_tilts(path)
    np.testing.assert_array_equal(zs, np.arange(41))
    angles = tilt_angles(SynthConfig.demo())
    ours = angles[acquisition_order(angles, "dose-symmetric", 2)]
    np.testing.assert_allclose(ours, tilts, atol=0.01)


def test_other_schemes():
    a = np.arange(-9.0, 10.0, 3.0)
    np.testing.assert_array_equal(a[acquisition_order(a, "unidirectional")], a)
    np.testing.assert_array_equal(a[acquisition_order(a, "bidirectional")], [0, 3, 6, 9, -3, -6, -9])
    with pytest.raises(ValueError):
        acquisition_order(a, "spiral")


def test_xf_warp_round_trip_and_direction():
    img = np.zeros((64, 64))
    img[32 + 10, 32 + 0] = 1.0  # aligned image: a dot at x_ali - c = (0, 10)
    xf = xf_matrices(85.0, np.array([[2.0, -3.0]]))[0]
    raw = aligned_to_raw(img, xf, 0.0)
    a = xf[:4].reshape(2, 2)
    # x_ali - c = A (x_raw - c) + D  ->  x_raw = c + A^-1 (x_ali - c - D)
    x_raw = np.linalg.solve(a, np.array([0.0, 10.0]) - xf[4:])
    iy, ix = np.unravel_index(np.argmax(raw), raw.shape)
    assert (ix - 32, iy - 32) == pytest.approx(tuple(x_raw), abs=0.6)
    smooth = np.exp(-((np.arange(64)[:, None] - 30) ** 2 + (np.arange(64)[None] - 35) ** 2) / 50.0)
    back = raw_to_aligned(aligned_to_raw(smooth, xf, 0.0), xf, 0.0)
    assert np.abs(back - smooth).max() < 1e-3


@pytest.fixture(scope="module")
def tiny_series():
    cfg = SynthConfig.tiny()
    rng = np.random.default_rng(5)
    angles = tilt_angles(cfg)
    vlps = place_vlps(cfg, rng, angles)
    beads = place_fiducials(cfg, rng, angles, vlps)
    specimen = render_specimen(cfg, unit_map(cfg.unit_box_px, cfg.pixel_size_angstrom), vlps, beads)
    return cfg, specimen, simulate_tiltseries(specimen, cfg, rng)


def test_measured_snr_is_near_requested(tiny_series):
    cfg, _, ts = tiny_series
    assert ts["snr_measured"] == pytest.approx(cfg.snr, rel=0.2)
    assert ts["max_contrast"] < 1.0
    assert 0.01 < ts["snr_ice"] < 0.3 * cfg.snr  # the ice texture is a small part of the signal (tiny: 0.11)


def test_ice_constants_are_physical():
    # sigma at 300 kV: 6.53e-4 rad/(V Å) (e.g. Kirkland, Advanced Computing in EM); mean inner potential of
    # water from the molecular scattering amplitude: 4.48 V measured (Yesibolati et al. 2020)
    assert interaction_constant(300.0) == pytest.approx(6.526e-4, rel=2e-3)
    assert ICE_MOLECULES_PER_A3 * 47.878 * WATER_SCATTERING_AMPLITUDE_ANGSTROM == pytest.approx(4.48, rel=0.1)
    assert ice_phase_psd(2.0 * 700.0) == pytest.approx(2.0 * ice_phase_psd(700.0))


def test_ice_texture_has_the_physical_power_and_thickens_with_tilt():
    """Variance of the CTF-filtered ice texture = 4 PSD / pixel^2 * mean CTF^2; the ice is 1/cos(t) thicker at tilt t."""
    cfg = dataclasses.replace(SynthConfig.tiny(), tomogram_shape_zyx=(32, 128, 128), pixel_size_angstrom=5.4)
    df = np.full(2, 30000.0)
    f, ice = _filtered_projections(np.zeros(cfg.tomogram_shape_zyx, np.float32), np.array([0.0, 60.0]), df, df, 0.0,
                                   np.zeros(2), cfg, np.random.default_rng(0))  # fmt: skip
    mean_ctf2 = np.mean(ctf_2d((128, 128), 5.4, 30000.0, 30000.0, 0.0, rfft=False) ** 2)
    expected = 4 * ice_phase_psd(cfg.ice_thickness) / 5.4**2 * mean_ctf2
    assert np.var(ice[0]) == pytest.approx(expected, rel=0.05)
    assert np.var(ice[1]) / np.var(ice[0]) == pytest.approx(2.0, rel=0.1)
    assert np.ptp(f[0]) < 1e-6  # no specimen: the projections are flat
    _, none = _filtered_projections(np.zeros(cfg.tomogram_shape_zyx, np.float32), np.array([0.0]), df, df, 0.0,
                                    np.zeros(1), cfg, None)  # fmt: skip
    assert not none.any()


def test_raw_images_are_the_warped_projections(tiny_series):
    cfg, specimen, ts = tiny_series
    for k in (0, 7, 20):  # acquisition index
        i = ts["order"][k]
        ali = raw_to_aligned(ts["raw"][k], ts["xf"][i], float(ts["raw"][k].mean()))
        ref = ts["aligned_noise_free"][i]
        inner = (slice(20, -20), slice(20, -20))
        r = np.corrcoef(ali[inner].ravel(), ref[inner].ravel())[0, 1]
        snr = np.var(ts["raw_noise_free"][k]) / np.var(ts["raw"][k] - ts["raw_noise_free"][k])
        assert r > 0.8 * np.sqrt(snr / (1 + snr))
        # protein dark: the noise-free image anticorrelates with the plain projection
        proj = project_volume(specimen, [ts["tilt_angles_deg"][i]])[0]
        assert np.corrcoef(ref[inner].ravel(), proj[inner].ravel())[0, 1] < -0.5
