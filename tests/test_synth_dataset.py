import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from stasnake.geometry.euler import dynamo_euler_to_matrix
from stasnake.io.dynamo_table import particle_positions, read_table
from stasnake.io.imod import read_tlt, read_xf
from stasnake.io.mdoc import read_mdoc
from stasnake.io.mrc import read_mrc
from stasnake.synth import SynthConfig, generate_dataset
from stasnake.synth.tiltseries import raw_to_aligned
from stasnake.tilt.project import project_volume


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig.tiny()
    return out, cfg, generate_dataset(out, cfg)


def test_files_shapes_and_pixel_sizes(tiny):
    out, cfg, manifest = tiny
    nz, ny, nx = cfg.tomogram_shape_zyx
    px = cfg.pixel_size_angstrom
    sheet = pd.read_csv(out / "tomograms.tsv", sep="\t")
    assert list(sheet.columns) == ["name", "tilt_series", "mdoc"] and list(sheet["name"]) == ["TS_01"]
    stack, apix = read_mrc(out / sheet["tilt_series"][0])
    n = manifest["tiltseries"][0]["n_tilts"]
    assert stack.shape == (n, ny, nx) and stack.dtype == np.float32 and apix == pytest.approx(px)
    header, sections = read_mdoc(out / sheet["mdoc"][0])
    assert header["PixelSpacing"] == pytest.approx(px) and header["TiltAxisAngle"] == pytest.approx(85.0)
    assert tuple(header["ImageSize"]) == (nx, ny) and len(sections) == n
    assert (sections["TargetDefocus"] < 0).all() and (sections["ExposureDose"] > 0).all()
    unit, apix = read_mrc(out / "truth" / "unit_map.mrc")
    assert unit.shape == (cfg.unit_box_px,) * 3 and apix == pytest.approx(px)
    truth = out / "truth" / "TS_01"
    phantom, apix = read_mrc(truth / "phantom.mrc")
    assert phantom.shape == (nz, ny, nx) and apix == pytest.approx(px)
    tlt = read_tlt(truth / "tilt_angles.tlt")
    assert np.all(np.diff(tlt) > 0) and len(tlt) == n
    np.testing.assert_allclose(np.sort(sections["TiltAngle"]), tlt, atol=0.01)
    assert read_xf(truth / "alignment.xf", n_expected=n).shape == (n, 6)
    ctf = pd.read_csv(truth / "ctf.csv")
    np.testing.assert_allclose(ctf["tilt_angle_deg"], tlt)
    acq = ctf["acquisition_index"].to_numpy()
    np.testing.assert_allclose(sections["TiltAngle"].to_numpy()[acq], tlt, atol=0.01)
    assert len(pd.read_csv(truth / "fiducials.csv")) == cfg.n_fiducials
    saved = json.loads((out / "truth" / "manifest.json").read_text())
    assert saved["n_particles"] == len(read_table(truth / "particles.tbl")) == manifest["n_particles"] > 30


def test_truth_table_lies_on_the_lattice_spheres(tiny):
    out, cfg, _ = tiny
    truth = out / "truth" / "TS_01"
    table = read_table(truth / "particles.tbl")
    vlps = pd.read_csv(truth / "vlps.csv")
    xyz = particle_positions(table)
    mats = dynamo_euler_to_matrix(table[["tdrot", "tilt", "narot"]].to_numpy())
    assert (table["tomo"] == 1).all() and (table["apix"] == cfg.pixel_size_angstrom).all()
    for _, v in vlps.iterrows():
        sel = table["reg"].to_numpy() == v["vlp_id"]
        d = xyz[sel] - v[["x", "y", "z"]].to_numpy(float)
        r = np.linalg.norm(d, axis=1)
        np.testing.assert_allclose(r, v["lattice_radius_px"], rtol=1e-5)
        cosang = np.sum(mats[sel][:, :, 2] * d / r[:, None], axis=1)
        assert np.degrees(np.arccos(np.clip(cosang, -1, 1))).max() < 1.0
        nn, _ = cKDTree(d).query(d, k=2)
        assert np.median(nn[:, 1]) * cfg.pixel_size_angstrom == pytest.approx(cfg.lattice_spacing_angstrom, rel=0.1)
        assert 0.55 <= v["coverage"] <= 0.85
        assert v["radius_px"] > v["lattice_radius_px"]  # lattice inside the membrane


def test_raw_stack_matches_phantom_projection(tiny):
    out, _, _ = tiny
    truth = out / "truth" / "TS_01"
    stack, _ = read_mrc(out / "tiltseries" / "TS_01.mrc")
    phantom, _ = read_mrc(truth / "phantom.mrc")
    xf = read_xf(truth / "alignment.xf")
    ctf = pd.read_csv(truth / "ctf.csv")
    for i in (3, 10, 17):  # sorted index
        k = int(ctf["acquisition_index"][i])
        ali = raw_to_aligned(stack[k], xf[i], float(stack[k].mean()))
        proj = project_volume(phantom, [ctf["tilt_angle_deg"][i]])[0]
        inner = (slice(16, -16), slice(16, -16))
        r = np.corrcoef(ali[inner].ravel(), proj[inner].ravel())[0, 1]
        assert r < -0.3  # protein dark, up to noise and CTF


def test_determinism(tiny, tmp_path):
    out, cfg, manifest = tiny
    again = generate_dataset(tmp_path, cfg)
    assert again["n_particles"] == manifest["n_particles"]
    a, _ = read_mrc(out / "tiltseries" / "TS_01.mrc")
    b, _ = read_mrc(tmp_path / "tiltseries" / "TS_01.mrc")
    np.testing.assert_array_equal(a, b)
    assert (out / "truth" / "TS_01" / "particles.tbl").read_text() == (tmp_path / "truth" / "TS_01" / "particles.tbl").read_text()
