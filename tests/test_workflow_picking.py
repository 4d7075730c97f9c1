"""Picking from VLP dipole annotations as Snakemake runs it: the annotation checkpoint, oversampling
on the annotated spheres, and the autopilot's proposals, measured against the synthetic truth."""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.spatial import cKDTree

from stasnake.io.dynamo_table import particle_positions, read_table
from stasnake.picking.dipoles import read_dipoles
from stasnake.synth import SynthConfig, generate_dataset
from stasnake.synth.annotations import write_demo_annotations
from tests.test_workflow import base_config, snakemake, write_samples

pytestmark = pytest.mark.integration


def make_run(root: Path, data: Path, config: SynthConfig, autopilot: bool) -> Path:
    workdir = root / ("autopilot" if autopilot else "manual")
    workdir.mkdir()
    write_samples(workdir, data, ["TS_01"])  # truth .xf and .defocus imported
    cfg = base_config()
    cfg["samples"] = "tomograms.tsv"
    cfg["reconstruction"].update(thickness_px=config.tomogram_shape_zyx[0], binnings=[2])
    # the lattice lies 90 Å inside the clicked membrane (synthetic immature lattice)
    cfg["picking"].update(method="dipoles", radius_offset_angstrom=config.lattice_offset_angstrom)
    cfg["annotations"]["autopilot"] = autopilot
    cfg["sta_projects"] = {}
    cfg["validation"].update(truth_map=None, truth_phantom=None)
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    return workdir


@pytest.fixture(scope="module")
def picking_runs(tmp_path_factory):
    data = tmp_path_factory.mktemp("pick_data")
    config = dataclasses.replace(SynthConfig.demo(), n_tiltseries=1, tomogram_shape_zyx=(144, 192, 192), n_vlps=1,
                                 vlp_radius_range_angstrom=(250.0, 270.0), n_fiducials=4, seed=2)  # fmt: skip
    generate_dataset(data, config)
    root = tmp_path_factory.mktemp("pick_runs")
    manual = make_run(root, data, config, autopilot=False)
    first = snakemake(manual)  # no annotation yet: makes what it can and says what to click
    write_demo_annotations(data, manual / "annotations", seed=4)  # the simulated user clicks
    second = snakemake(manual)
    autopilot = make_run(root, data, config, autopilot=True)
    snakemake(autopilot)
    return data, config, manual, autopilot, first.stdout + first.stderr, second.stdout + second.stderr


def test_missing_dipoles_stop_only_picking_with_one_message(picking_runs):
    _, _, manual, _, first, _ = picking_runs
    assert "annotations/TS_01/dipoles.csv" in first and "8 to 9 VLPs" in first
    assert "stasnake prepare-view results/tomograms/TS_01_bin2.mrc results/views/TS_01_bin2_view.mrc" in first
    # the run made the binned tomogram and the viewing copy the message names
    assert (manual / "results/views/TS_01_bin2_view.mrc").exists()


def test_oversampled_crop_points_cover_the_true_lattice(picking_runs):
    data, config, manual, _, _, second = picking_runs
    assert "Nothing to be done" not in second
    table = read_table(manual / "results/picking/TS_01/crop.tbl")
    truth = read_table(data / "truth/TS_01/particles.tbl")
    spacing = 0.47 * config.unit_box_px
    crop = particle_positions(table)
    dist, _ = cKDTree(crop).query(particle_positions(truth))
    print(f"{len(table)} crop points (spacing {spacing:.1f} px) for {len(truth)} lattice units; distance from a "
          f"unit to its nearest crop point: median {np.median(dist):.1f}, max {dist.max():.1f} px")  # fmt: skip
    # every unit lies within a crop box (half-side 16 px), most within one spacing
    assert dist.max() < config.unit_box_px / 2
    assert np.mean(dist < spacing) > 0.9
    # the simulated user's sloppy clicks were snapped onto the membrane before oversampling
    vlps = pd.read_csv(manual / "results/picking/TS_01/vlps.tsv", sep="\t")
    true_vlps = pd.read_csv(data / "truth/TS_01/vlps.csv")
    true_c = true_vlps[["x", "y", "z"]].to_numpy(float)
    errors = {}
    for kind in ("clicked", "refined"):
        c = vlps[[f"{kind}_x", f"{kind}_y", f"{kind}_z"]].to_numpy(float)
        k = np.linalg.norm(c[:, None] - true_c[None], axis=2).argmin(axis=1)
        errors[kind] = (np.linalg.norm(c - true_c[k], axis=1), np.abs(vlps[f"{kind}_radius_px"] - true_vlps.radius_px.to_numpy()[k]))
    print("VLP centre and radius error (px), clicked:", np.round(errors["clicked"], 2).tolist(),
          "refined:", np.round(errors["refined"], 2).tolist())  # fmt: skip
    assert np.all(errors["refined"][0] < 1.5) and np.all(errors["refined"][1] < 1.0)
    # the per-tomogram average of the oversampled boxes exists (the template of step 2)
    assert (manual / "results/averages/TS_01.mrc").exists()
    # the workflow wrote nothing into the user's annotations
    written = sorted(p.relative_to(manual / "annotations").as_posix() for p in (manual / "annotations").rglob("*") if p.is_file())
    assert written == ["TS_01/dipoles.csv", "particle_centers.cmm", "reference_center.cmm"]


def test_autopilot_proposes_the_vlps(picking_runs):
    data, config, _, autopilot, _, _ = picking_runs
    proposal = read_dipoles(autopilot / "results/proposals/TS_01/dipoles.csv")
    truth = pd.read_csv(data / "truth/TS_01/vlps.csv")
    assert len(proposal) == len(truth)
    centre_err = np.linalg.norm(proposal[["center_x", "center_y", "center_z"]].to_numpy() - truth[["x", "y", "z"]].to_numpy(), axis=1)
    radius_err = np.abs(proposal.radius_px.to_numpy() - truth.radius_px.to_numpy())
    print(f"autopilot: centre error {centre_err.max():.2f} px, radius error {radius_err.max():.2f} px (full size)")
    assert centre_err.max() < 3.0 and radius_err.max() < 3.0
    assert (autopilot / "results/picking/TS_01/crop.tbl").exists()
    assert not (autopilot / "annotations").exists()
