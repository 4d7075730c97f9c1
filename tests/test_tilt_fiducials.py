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
from stasnake.tilt.fiducials import detect_beads, track_beads

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


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    config = small_series_config()
    root = tmp_path_factory.mktemp("fid")
    generate_dataset(root, config)
    stack, _ = read_mrc(root / "tiltseries" / "TS_01.mrc")
    _, sections = read_mdoc(root / "tiltseries" / "TS_01.mrc.mdoc")
    angles = sections["TiltAngle"].to_numpy(dtype=float)
    order = np.argsort(angles, kind="stable")  # raw stack: acquisition order; truth: sorted
    xf = read_xf(root / "truth" / "TS_01" / "alignment.xf")
    fid = pd.read_csv(root / "truth" / "TS_01" / "fiducials.csv")
    stack = np.asarray(stack)[order]
    angles = angles[order]
    truth = true_raw_positions(fid, xf, angles, config.tomogram_shape_zyx)
    return {"stack": stack, "angles": angles, "truth": truth, "d_px": BEAD_DIAMETER_ANGSTROM / config.pixel_size_angstrom}


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
        assert e.size >= 0.5 * n_tilts
        assert np.median(e) < 0.8 and np.mean(e < 1.5) > 0.9, (k, np.round(e, 2))


def test_no_beads_raises_input_error():
    rng = np.random.default_rng(0)
    stack = rng.poisson(50.0, (5, 96, 96)).astype(np.float32)
    with pytest.raises(InputError) as info:
        track_beads(stack, np.arange(-6, 7, 3.0), 12.0, 85.0, source="TS_07.mrc")
    assert info.value.source == "TS_07.mrc" and "no gold beads" in info.value.problem
