"""Autopilot VLP detection on a reconstructed synthetic tomogram, scored against the truth.

Two VLPs (membrane radius ~31-43 px at 5.4 Å/px) in a 224 x 224 x 144 tomogram
reconstructed by WBP from the true alignment, Fourier-binned by 2; the proposals
are compared with truth/TS_01/vlps.csv in full-size pixels. Run with ``-s`` to
see the numbers.
"""

import dataclasses
import time

import numpy as np
import pandas as pd
import pytest

from stasnake.errors import InputError
from stasnake.io.imod import read_xf
from stasnake.io.mdoc import read_mdoc
from stasnake.io.mrc import read_mrc
from stasnake.picking.detect_vlps import (
    detect_vlps,
    detections_to_dipoles,
    refine_dipoles,
    refine_sphere,
    shell_template_ft,
)
from stasnake.picking.dipoles import dipoles_from_spheres, read_dipoles, write_dipoles
from stasnake.synth import generate_dataset
from stasnake.synth.config import SynthConfig
from stasnake.tilt.align_stack import apply_xf
from stasnake.tilt.reconstruct import bin_volume_fourier, reconstruct_wbp

BINNING = 2
BILAYER_ANGSTROM = 38.0


@pytest.fixture(scope="module")
def binned(tmp_path_factory):
    out = tmp_path_factory.mktemp("detect_vlps")
    config = dataclasses.replace(
        SynthConfig.demo(), n_tiltseries=1, tomogram_shape_zyx=(144, 224, 224), shift_rms_px=2.0, n_vlps=2,
        vlp_radius_range_angstrom=(180.0, 240.0), n_fiducials=2,
    )  # fmt: skip
    generate_dataset(out, config)
    raw, apix = read_mrc(out / "tiltseries" / "TS_01.mrc")
    _, sections = read_mdoc(out / "tiltseries" / "TS_01.mrc.mdoc")
    angles = sections.sort_values("ZValue")["TiltAngle"].to_numpy(dtype=float)
    order = np.argsort(angles, kind="stable")
    aligned = apply_xf(raw[order], read_xf(out / "truth" / "TS_01" / "alignment.xf"))
    tomogram = reconstruct_wbp(aligned, angles[order], config.tomogram_shape_zyx[0])
    truth = pd.read_csv(out / "truth" / "TS_01" / "vlps.csv")
    return bin_volume_fourier(tomogram, BINNING), apix * BINNING, truth, out


def test_template_is_zero_mean_unit_norm():
    shape = (20, 24, 32)
    t = shell_template_ft(shape, 6.0, 1.0, bilayer_separation_px=2.0)
    real = np.fft.irfftn(t, s=shape)
    assert abs(real.sum()) < 1e-9
    assert np.sum(real**2) == pytest.approx(1.0, rel=1e-9)


def test_detects_synthetic_vlps(binned, tmp_path):
    volume, apix_binned, truth, _ = binned
    t0 = time.perf_counter()
    det = detect_vlps(volume, (150.0 / apix_binned, 330.0 / apix_binned),
                      bilayer_separation_px=BILAYER_ANGSTROM / apix_binned)  # fmt: skip
    elapsed = time.perf_counter() - t0
    dipoles = detections_to_dipoles(det, BINNING)
    true_c = truth[["x", "y", "z"]].to_numpy(float)
    found_c = dipoles[["center_x", "center_y", "center_z"]].to_numpy(float)
    dist = np.linalg.norm(true_c[:, None] - found_c[None], axis=2)
    match = dist.argmin(axis=1)
    centre_err = dist[np.arange(len(truth)), match]
    radius_err = np.abs(dipoles.radius_px.to_numpy()[match] - truth.radius_px.to_numpy())
    n_false = len(dipoles) - len(set(match[centre_err < 10.0]))
    print(f"\nbinned {volume.shape} at {apix_binned} Å/px: detection {elapsed:.1f} s; {len(dipoles)} proposals for "
          f"{len(truth)} VLPs; centre error {np.round(centre_err, 2)} px, radius error {np.round(radius_err, 2)} px "
          f"(full size, true radii {np.round(truth.radius_px.to_numpy(), 1)}); scores {np.round(det.score.to_numpy(), 1)}; "
          f"false positives {n_false}")  # fmt: skip
    assert np.all(centre_err < 2.0)
    assert np.all(radius_err < 2.0)
    assert n_false == 0
    path = tmp_path / "proposals" / "dipoles.csv"
    write_dipoles(path, dipoles, binning=BINNING, comment="autopilot proposals")
    back = read_dipoles(path, binning_expected=BINNING)
    assert np.allclose(back.radius_px, dipoles.radius_px, rtol=1e-5)


def test_no_detections_in_noise():
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((48, 96, 96)).astype(np.float32)
    det = detect_vlps(noise, (10.0, 20.0), bilayer_separation_px=3.5)
    print(f"\nnoise: {len(det)} detections")
    assert len(det) == 0


def test_refine_dipoles_snaps_sloppy_clicks_onto_the_membrane(binned):
    """Clicks off by 5-6 px in centre and 13-15 % in radius come back within 1.5 px and 1 px."""
    volume, apix_binned, truth, _ = binned
    true_c = truth[["x", "y", "z"]].to_numpy(float)
    true_r = truth["radius_px"].to_numpy(float)
    click_error = np.array([[3.0, -2.0, 4.0], [-4.0, 2.0, -3.0]])[: len(truth)]
    radius_factor = np.array([1.15, 0.87])[: len(truth)]
    clicks = dipoles_from_spheres(true_c + click_error, true_r * radius_factor)
    clicks["binning"] = BINNING
    refined, report = refine_dipoles(clicks, volume, BINNING, search_fraction=0.25,
                                     bilayer_separation_px=BILAYER_ANGSTROM / apix_binned)  # fmt: skip
    centre_err = np.linalg.norm(refined[["center_x", "center_y", "center_z"]].to_numpy() - true_c, axis=1)
    radius_err = np.abs(refined["radius_px"].to_numpy() - true_r)
    surface = refined[["surface_x", "surface_y", "surface_z"]].to_numpy() - refined[["center_x", "center_y", "center_z"]].to_numpy()
    print(f"\nclicks off by {np.round(np.linalg.norm(click_error, axis=1), 1)} px and "
          f"{np.round(np.abs(clicks.radius_px.to_numpy() - true_r), 1)} px in radius: refined centre error "
          f"{np.round(centre_err, 2)} px, radius error {np.round(radius_err, 2)} px (full size)")  # fmt: skip
    assert np.all(centre_err < 1.5)
    assert np.all(radius_err < 1.0)
    assert np.allclose(np.linalg.norm(surface, axis=1), refined["radius_px"])
    assert report["moved_px"].min() > 4.0 and not report["at_limit"].any()
    assert np.allclose(clicks["center_x"], true_c[:, 0] + click_error[:, 0])  # the input is not modified
    # a click further off than the search allows is flagged
    _, report = refine_dipoles(clicks, volume, BINNING, search_fraction=0.05,
                               bilayer_separation_px=BILAYER_ANGSTROM / apix_binned)  # fmt: skip
    assert report["at_limit"].all()


def test_refine_sphere_without_search_keeps_the_centre(binned):
    volume, apix_binned, truth, _ = binned
    c = truth[["x", "y", "z"]].to_numpy(float)[0]
    centre_binned = (c - 1) / BINNING + 1
    fit = refine_sphere(volume, centre_binned + 0.3, truth["radius_px"].iloc[0] / BINNING, search_px=0.0,
                        radius_search_px=3.0, bilayer_separation_px=BILAYER_ANGSTROM / apix_binned)  # fmt: skip
    assert np.allclose([fit["x"], fit["y"], fit["z"]], np.round(centre_binned + 0.3), atol=0.5)
    assert abs(fit["radius_px"] * BINNING - truth["radius_px"].iloc[0]) < 1.5


def test_refine_dipoles_names_the_vlp_clicked_outside_the_tomogram(binned):
    volume, apix_binned, truth, _ = binned
    clicks = dipoles_from_spheres(np.array([[100.0, 100.0, 70.0], [100.0, 100.0, 5000.0]]), np.array([60.0, 60.0]))
    clicks["vlp"] = [1, 2]
    with pytest.raises(InputError, match=r"annotations/TS_01/dipoles.csv.*VLP 2: the click .* outside"):
        refine_dipoles(clicks, volume, BINNING, source="annotations/TS_01/dipoles.csv")
