"""Gold-bead detection and tracking against the synthetic ground truth."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from stasnake.errors import InputError
from stasnake.io.imod import read_xf
from stasnake.io.mdoc import read_mdoc
from stasnake.io.mrc import read_mrc
from stasnake.synth.config import SynthConfig
from stasnake.synth.dataset import generate_dataset
from stasnake.tilt.align_model import fit_projection_model, minimum_norm_gauge
from stasnake.tilt.fiducials import detect_beads, track_beads, track_beads_with_shifts

BEAD_DIAMETER_ANGSTROM = 100.0


def small_series_config() -> SynthConfig:
    """One 41-tilt series, 256x256 px at 5.4 Å/px, 1 small VLP and 10 beads of 18.5 px."""
    return dataclasses.replace(
        SynthConfig.demo(), n_tiltseries=1, tomogram_shape_zyx=(128, 256, 256), n_vlps=1, n_fiducials=10,
        vlp_radius_range_angstrom=(150.0, 170.0), lattice_offset_angstrom=-60.0,
        bead_diameter_angstrom=BEAD_DIAMETER_ANGSTROM,
    )  # fmt: skip


def true_raw_positions(fid: pd.DataFrame, xf: np.ndarray, angles_deg, shape_zyx) -> np.ndarray:
    """(n_beads, n_tilts, 2) raw (x, y) of each bead: x_raw = c + A^-1 (p_t(P) - D)."""
    nz, ny, nx = shape_zyx
    c = np.array([nx // 2, ny // 2], dtype=float)
    p = fid[["x", "y", "z"]].to_numpy() - 1.0 - np.array([nx // 2, ny // 2, nz // 2])
    t = np.radians(angles_deg)
    out = np.empty((len(p), len(t), 2))
    for i in range(len(t)):
        proj = np.column_stack([p[:, 0] * np.cos(t[i]) + p[:, 2] * np.sin(t[i]), p[:, 1]])
        out[:, i] = c + (proj - xf[i, 4:]) @ np.linalg.inv(xf[i, :4].reshape(2, 2)).T
    return out


def load_sorted_series(root, config: SynthConfig) -> dict:
    """TS_01 of a generated data set sorted by tilt angle (as the import rule writes it), with its truth."""
    stack, _ = read_mrc(root / "tiltseries" / "TS_01.mrc")
    _, sections = read_mdoc(root / "tiltseries" / "TS_01.mrc.mdoc")
    angles = sections["TiltAngle"].to_numpy(dtype=float)
    order = np.argsort(angles, kind="stable")  # raw stack: acquisition order; truth: sorted
    xf = read_xf(root / "truth" / "TS_01" / "alignment.xf")
    fid = pd.read_csv(root / "truth" / "TS_01" / "fiducials.csv")
    stack = np.asarray(stack)[order]
    angles = angles[order]
    truth = true_raw_positions(fid, xf, angles, config.tomogram_shape_zyx)
    return {"stack": stack, "angles": angles, "truth": truth, "xf": xf,
            "d_px": config.bead_diameter_angstrom / config.pixel_size_angstrom}  # fmt: skip


def shift_error_px(shifts, xf_true, angles) -> float:
    """RMS |D_est - D_true| over tilts, both in the minimum-norm gauge (the 3-D position is not observable)."""
    a, _ = minimum_norm_gauge(shifts, angles)
    b, _ = minimum_norm_gauge(xf_true[:, 4:], angles)
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1))))


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    config = small_series_config()
    root = tmp_path_factory.mktemp("fid")
    generate_dataset(root, config)
    return load_sorted_series(root, config)


def test_detect_beads_subpixel_on_synthetic_discs():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:200, :240]
    true = np.array([[40.3, 50.7], [120.6, 30.2], [200.1, 150.9], [90.8, 160.4]])
    img = 100.0 + rng.normal(0, 5.0, yy.shape)
    for x, y in true:
        img -= 30.0 / (1 + np.exp((np.hypot(xx - x, yy - y) - 7.0) / 0.8))  # dark disc, 14 px
    found = detect_beads(img, 14.0)
    assert len(found) == len(true)
    err = np.min(np.linalg.norm(found[:, None] - true[None], axis=-1), axis=0)
    assert np.all(err < 0.3), err


def test_detect_beads_at_zero_tilt_matches_truth(series):
    i0 = int(np.argmin(np.abs(series["angles"])))
    truth = series["truth"][:, i0]
    found = detect_beads(series["stack"][i0], series["d_px"])
    dist = np.min(np.linalg.norm(truth[:, None] - found[None], axis=-1), axis=1)
    sep = np.linalg.norm(truth[:, None] - truth[None], axis=-1) + np.eye(len(truth)) * 1e9
    isolated = sep.min(axis=1) > 1.3 * series["d_px"]
    assert isolated.sum() >= 6
    assert np.all(dist[isolated] < 1.0), dist  # measured < 0.6 px
    assert len(found) <= len(truth) + 1  # no more than one false or merged detection


def test_tracks_follow_the_true_beads(series):
    tracks = track_beads(series["stack"], series["angles"], series["d_px"], 85.0)
    n_tilts = len(series["angles"])
    assert tracks.shape[1:] == (n_tilts, 2) and tracks.shape[0] >= 5
    truth = series["truth"]
    for track in tracks:
        err = np.linalg.norm(truth - track[None], axis=-1)
        k = int(np.argmin(np.nanmedian(err, axis=1)))
        e = err[k][np.isfinite(err[k])]
        assert e.size >= 0.25 * n_tilts  # min_track_fraction
        assert np.median(e) < 0.8 and np.mean(e < 1.5) > 0.9, (k, np.round(e, 2))


def test_no_beads_raises_input_error():
    rng = np.random.default_rng(0)
    stack = rng.poisson(50.0, (5, 96, 96)).astype(np.float32)
    with pytest.raises(InputError) as info:
        track_beads(stack, np.arange(-6, 7, 3.0), 12.0, 85.0, source="TS_07.mrc")
    assert info.value.source == "TS_07.mrc" and "no gold bead" in info.value.problem


def workflow_case_config(seed: int) -> SynthConfig:
    """The data set of tests/test_workflow.py::estimated_run: 192 x 192 px, 41 tilts, 8 beads of 18.5 px.

    Eight beads and a VLP in a small volume: in projection many beads overlap
    in many tilts (seed 3: 7 of 8 beads touch another at 0°), and on seed 1
    pairs of beads come within 1.2 diameters in the same two tilts.
    """
    return dataclasses.replace(SynthConfig.demo(), n_tiltseries=1, tomogram_shape_zyx=(144, 192, 192), n_vlps=1,
                               vlp_radius_range_angstrom=(250.0, 270.0), n_fiducials=8, seed=seed)  # fmt: skip


# measured (axis error deg, shift RMS error px, residual px): seed 1: 0.03, 0.14, 0.35; seed 0: 0.12, 0.14, 0.39;
# seed 2: 0.01, 0.18, 0.38; seed 3: 0.09, 0.30, 0.52. Before the fix seed 1 gave 0.01, 35.4, 0.40 (two tilts
# without any observation whose free shifts absorbed the gauge) and seed 3 4.6, 34.7, 3.5 (tracks joined
# across beads).
@pytest.mark.parametrize("seed", [1, 0, 2, 3])
def test_crowded_series_alignment_matches_truth(seed, tmp_path):
    config = workflow_case_config(seed)
    generate_dataset(tmp_path, config)
    s = load_sorted_series(tmp_path, config)
    stack, angles, truth = s["stack"], s["angles"], s["truth"]
    # exactly what scripts/align_tiltseries.py does
    tracks = track_beads(stack, angles, s["d_px"], 85.0, source="TS_01.mrc")
    result = fit_projection_model(tracks, angles, stack.shape[1:], 85.0, source="TS_01.mrc")
    assert abs(result["tilt_axis_angle_deg"] - 85.0) < 0.5
    assert shift_error_px(result["shifts"], s["xf"], angles) < 1.0
    assert result["residual_rms_px"] < 1.0
    assert result["unobserved_tilts"] == [] and np.isfinite(tracks[..., 0]).sum(axis=0).min() >= 2
    # every track follows one bead (no observation farther than a quarter diameter from it), and
    # 90 % of all observations are within 1.5 px (the others: beads biased by an overlapping neighbour)
    errors = []
    for track in tracks:
        err = np.linalg.norm(truth - track[None], axis=-1)
        e = err[int(np.argmin(np.nanmedian(err, axis=1)))]
        errors.append(e[np.isfinite(e)])
    errors = np.concatenate(errors)
    assert errors.max() < 0.25 * s["d_px"] and np.mean(errors < 1.5) > 0.9, np.round(np.sort(errors)[-10:], 1)


def test_tracker_shifts_are_a_usable_fallback(tmp_path):
    config = workflow_case_config(1)
    generate_dataset(tmp_path, config)
    s = load_sorted_series(tmp_path, config)
    tracks, shifts = track_beads_with_shifts(s["stack"], s["angles"], s["d_px"], 85.0)
    assert shifts.shape == (len(s["angles"]), 2)
    assert shift_error_px(shifts, s["xf"], s["angles"]) < 1.0  # measured 0.14 px
    # a tilt whose observations are all lost takes its shift from the fallback, in the model's gauge
    lost = [26, 27]
    tracks[:, lost] = np.nan
    with pytest.raises(InputError) as info:
        fit_projection_model(tracks, s["angles"], s["stack"].shape[1:], 85.0, source="TS_01.mrc")
    assert info.value.source == "TS_01.mrc" and "18, 21°" in info.value.problem
    result = fit_projection_model(tracks, s["angles"], s["stack"].shape[1:], 85.0, fallback_shifts_px=shifts)
    assert result["unobserved_tilts"] == lost
    assert shift_error_px(result["shifts"], s["xf"], s["angles"]) < 1.0
