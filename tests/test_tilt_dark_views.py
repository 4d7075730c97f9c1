import numpy as np
import pytest

from stasnake.errors import InputError
from stasnake.synth import SynthConfig, tilt_angles
from stasnake.synth.phantom import place_fiducials, place_vlps, render_specimen
from stasnake.synth.tiltseries import simulate_tiltseries
from stasnake.synth.unit import unit_map
from stasnake.tilt.dark_views import detect_dark_views, structure_index


@pytest.fixture(scope="module")
def series():
    """Tiny synthetic tilt series: raw stack (acquisition order), its tilt angles, dose in e/px."""
    cfg = SynthConfig.tiny()
    rng = np.random.default_rng(11)
    angles = tilt_angles(cfg)
    vlps = place_vlps(cfg, rng, angles)
    beads = place_fiducials(cfg, rng, angles, vlps)
    specimen = render_specimen(cfg, unit_map(cfg.unit_box_px, cfg.pixel_size_angstrom), vlps, beads)
    ts = simulate_tiltseries(specimen, cfg, rng)
    dose_px = cfg.dose_per_tilt_e_per_A2 * cfg.pixel_size_angstrom**2
    return ts["raw"], ts["tilt_angles_deg"][ts["order"]], dose_px, cfg


def test_normal_series_has_no_flags_and_the_fit_follows_the_ice(series):
    stack, angles, dose_px, cfg = series
    table = detect_dark_views(stack, angles, expected_counts_per_pixel=dose_px)
    assert len(table) == len(stack)
    assert not table["flagged"].any()
    assert table["fit_inlier"].all()
    # log(mean) = log(I0) - T / (mfp cos t): slope -T/mfp = -0.168, I0 = the dose in e/px
    assert table.attrs["slope"] == pytest.approx(-cfg.ice_thickness / cfg.inelastic_mfp_angstrom, rel=0.1)
    assert np.exp(table.attrs["log_i0"]) == pytest.approx(dose_px, rel=0.03)
    assert np.abs(table["mean_ratio"] - 1).max() < 0.01
    assert table["structure"].min() > 5 * 0.27  # blank threshold for 128² images binned 4: 0.27


def test_thick_ice_high_tilts_are_not_flagged(series):
    stack, angles, *_ = series
    # much thicker ice: the 60° views keep 45 % of the 0° intensity, which the cos-law fit expects
    thick = stack * np.exp(-0.8 * (1 / np.cos(np.radians(angles)) - 1))[:, None, None]
    table = detect_dark_views(thick, angles)
    assert not table["flagged"].any()
    high = np.abs(angles) > 55
    assert (table.loc[high, "mean"] < 0.5 * table["mean"].max()).all()
    assert np.abs(table.loc[high, "z_score"]).max() < 3


def test_dark_and_blank_views_are_flagged_and_nothing_else(series):
    stack, angles, dose_px, _ = series
    rng = np.random.default_rng(2)
    bad = stack.copy()
    i_zero = int(np.argmin(np.abs(angles)))
    i_high = int(np.argmax(angles))  # +60°
    i_mid = int(np.flatnonzero(np.isclose(angles, -30))[0])
    i_const = int(np.flatnonzero(np.isclose(angles, 42))[0])
    bad[i_zero] *= 0.05
    bad[i_high] *= 0.05
    bad[i_mid] = rng.poisson(float(stack[i_mid].mean()), stack[i_mid].shape)  # flat beam, shot noise only
    bad[i_const] = float(stack[i_const].mean())  # constant image at the normal level
    table = detect_dark_views(bad, angles, source="TS_01.mrc")
    assert set(np.flatnonzero(table["dark"])) == {i_zero, i_high}
    assert set(np.flatnonzero(table["blank"])) == {i_mid, i_const}
    assert set(np.flatnonzero(table["flagged"])) == {i_zero, i_high, i_mid, i_const}
    assert table.loc[[i_zero, i_high], "mean_ratio"].max() < 0.06
    assert table.loc[[i_zero, i_high], "z_score"].max() < -20
    assert abs(table.loc[i_mid, "shot_noise_ratio"] - 1) < 0.1  # pure Poisson counts
    # the fit ignores the bad views: expectations of the good views are unchanged
    good = ~table["flagged"].to_numpy()
    assert np.abs(table.loc[good, "mean_ratio"] - 1).max() < 0.01
    # a near-zero constant image is both dark and blank
    bad[i_const] = 7.0
    table = detect_dark_views(bad, angles, source="TS_01.mrc")
    assert table.loc[i_const, ["dark", "blank"]].all()
    # never drops anything
    assert list(table["view"]) == list(range(len(stack)))


def test_half_dark_view_is_reported_by_its_z_score_but_not_flagged(series):
    stack, angles, *_ = series
    half = stack.copy()
    half[3] *= 0.5
    table = detect_dark_views(half, angles)
    assert not table["flagged"].any()
    assert table.loc[3, "z_score"] < -10
    assert not table.loc[3, "fit_inlier"]


def test_all_dark_raises(series):
    stack, angles, dose_px, _ = series
    rng = np.random.default_rng(4)
    beam_off = rng.poisson(0.5, stack.shape).astype(np.float32)  # stray counts only
    with pytest.raises(InputError, match=r"TS_01\.mrc.*all 21 views are dark"):
        detect_dark_views(beam_off, angles, source="TS_01.mrc")
    with pytest.raises(InputError, match="all 21 views are dark"):
        detect_dark_views(np.zeros_like(stack), angles, source="TS_01.mrc")
    # a uniformly dimmed series keeps its structure: only the absolute reference (the dose) catches it
    dim = stack * 0.05
    assert not detect_dark_views(dim, angles)["flagged"].any()
    with pytest.raises(InputError, match="all 21 views are dark"):
        detect_dark_views(dim, angles, source="TS_01.mrc", expected_counts_per_pixel=dose_px)


def test_bad_angles_and_structure_index():
    with pytest.raises(InputError, match="3 views but 2 tilt angles"):
        detect_dark_views(np.ones((3, 8, 8)), [0.0, 3.0], source="x.mrc")
    rng = np.random.default_rng(0)
    noise = rng.poisson(20.0, (256, 256)).astype(float)
    assert abs(structure_index(noise)) < 0.1
    assert structure_index(np.full((64, 64), 3.0)) == 0.0
    yy = np.arange(256)[:, None] * np.ones((1, 256))
    assert structure_index(noise + 5 * np.sin(yy / 10)) > 1.0
