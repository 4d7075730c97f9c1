"""Tests for the ``stasnake`` command line (stasnake.cli), run as a user would.

Most cases call ``stasnake.cli.main([...])`` in-process (fast); a few run
``python -m stasnake.cli`` in a subprocess to prove that what reaches a real
terminal is one line on stderr and never a traceback.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stasnake.cli import main
from stasnake.geometry.euler import dynamo_euler_to_matrix, relion_euler_to_matrix
from stasnake.geometry.relion import relion_tomograms_table
from stasnake.io.cmm import write_cmm
from stasnake.io.dynamo_doc import read_doc, write_doc
from stasnake.io.dynamo_table import new_table, particle_positions, read_table, write_table
from stasnake.io.mrc import write_mrc
from stasnake.io.star import read_star, write_star

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"
TBL_4_1 = REAL / "dynamo" / "relion2dynamo" / "4_1.tbl"
STAR_4_1 = REAL / "dynamo" / "relion2dynamo" / "4_1.star"
REFINE = REAL / "dynamo" / "relion2dynamo" / "refine.star"
WARP = REAL / "relion_star" / "dynamo2m_hiv_tutorial" / "relion3.1.star"

needs_real = pytest.mark.skipif(not REAL.is_dir(), reason="shared/realdata is not available")


# ----------------------------------------------------------------------------- helpers


def run(capsys, *args) -> tuple[int, str, str]:
    """Run ``stasnake ARGS`` in-process; return (exit status, stdout, stderr)."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def run_subprocess(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stasnake.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def assert_one_clean_error(rc: int, err: str, name: str, *problem: str) -> None:
    """Non-zero exit, exactly one stderr line naming ``name`` and every ``problem`` word."""
    assert rc == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert name in lines[0], lines[0]
    for word in problem:
        assert word.lower() in lines[0].lower(), (word, lines[0])


def assert_no_output(path: Path) -> None:
    """Neither the output nor a temporary ``.*.part*`` file of the atomic writer is left."""
    assert not path.exists()
    if path.parent.is_dir():
        assert list(path.parent.glob(".*.part*")) == []


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle of the rotation a^T b, stable for tiny angles: ||a - b||_F = 2 sqrt(2) sin(theta / 2)."""
    diff = np.linalg.norm((a - b).reshape(len(a), 9), axis=1)
    return np.degrees(2 * np.arcsin(np.clip(diff / (2 * np.sqrt(2)), 0, 1)))


def table_rotations(table: pd.DataFrame) -> np.ndarray:
    return dynamo_euler_to_matrix(table[["tdrot", "tilt", "narot"]].to_numpy(np.float64))


def star_rotations(particles: pd.DataFrame) -> np.ndarray:
    cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    return relion_euler_to_matrix(particles[cols].to_numpy(np.float64))


def small_table(path: Path, tomos=(1, 1, 3), apix: float = 2.0) -> pd.DataFrame:
    n = len(tomos)
    table = new_table(
        n,
        x=np.linspace(3.0, 7.0, n),
        y=np.linspace(2.0, 5.0, n),
        z=np.linspace(1.5, 3.5, n),
        tdrot=np.linspace(-30, 40, n),
        tilt=np.linspace(20, 80, n),
        narot=np.linspace(10, 170, n),
        tomo=list(tomos),
        apix=apix,
    )
    write_table(path, table)
    return table


# ----------------------------------------------------------------------------- end to end (subprocess)


@needs_real
def test_subprocess_tbl2star_real_table(tmp_path):
    out = tmp_path / "particles.star"
    proc = run_subprocess("tbl2star", TBL_4_1, out, "--relion", "4", "--pixel-size", "1.17")
    assert proc.returncode == 0, proc.stderr
    assert "6396 particles" in proc.stdout
    assert proc.stderr == ""
    assert len(read_star(out)["particles"]) == 6396


def test_subprocess_truncated_mrc_no_traceback(tmp_path):
    path = tmp_path / "broken.mrc"
    write_mrc(path, np.ones((10, 32, 32), np.float32), 2.0)
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size * 2 // 3)
    proc = run_subprocess("info", path)
    assert_one_clean_error(proc.returncode, proc.stderr, "broken.mrc", "MRC")
    assert proc.stdout == ""


def test_subprocess_bad_table_leaves_no_output(tmp_path):
    table = tmp_path / "bad.tbl"
    small_table(table, tomos=(1, 1, 1, 1))
    lines = table.read_text().splitlines()
    lines.insert(2, " ".join(["1"] * 10))
    table.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.star"
    proc = run_subprocess("tbl2star", table, out, "--relion", "4")
    assert_one_clean_error(proc.returncode, proc.stderr, "bad.tbl", "row 3", "10 columns")
    assert_no_output(out)


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "stasnake" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    for command in ("tbl2star", "star2tbl", "info", "synth"):
        assert command in help_text


# ----------------------------------------------------------------------------- tbl2star / star2tbl round trips


@needs_real
def test_tbl2star_star2tbl_relion4_round_trip_real(tmp_path, capsys):
    star, back = tmp_path / "4_1.star", tmp_path / "back.tbl"
    rc, out, err = run(capsys, "tbl2star", TBL_4_1, star, "--relion", "4", "--pixel-size", "1.17")
    assert (rc, err) == (0, "")
    assert "6396 particles" in out
    blocks = read_star(star)
    assert float(blocks["optics"]["rlnTomoTiltSeriesPixelSize"].iloc[0]) == pytest.approx(1.17)
    particles = blocks["particles"]
    assert len(particles) == 6396
    assert particles["rlnTomoName"].iloc[0] == "tomo_086"  # default names tomo_NNN

    rc, out, err = run(capsys, "star2tbl", star, back, "--doc", tmp_path / "back.doc")
    assert (rc, err) == (0, "")
    original, result = read_table(TBL_4_1), read_table(back)
    assert len(result) == 6396
    np.testing.assert_allclose(particle_positions(result), particle_positions(original), atol=1e-3)
    assert rotation_angle_deg(table_rotations(result), table_rotations(original)).max() < 1e-4
    np.testing.assert_array_equal(result["tomo"], original["tomo"])  # tomo_086 -> 86
    np.testing.assert_allclose(result["apix"], 1.17)
    assert read_doc(tmp_path / "back.doc")[86] == "tomo_086"


@needs_real
def test_tbl2star_relion5_round_trip_with_sizes_and_tomograms_star(tmp_path, capsys):
    star = tmp_path / "r5.star"
    size = ("4000", "4000", "2000")
    rc, _, err = run(
        capsys, "tbl2star", TBL_4_1, star, "--pixel-size", "1.17", "--tomogram-size", *size
    )
    assert (rc, err) == (0, "")
    particles = read_star(star)["particles"]
    assert "rlnCenteredCoordinateXAngst" in particles.columns
    assert "rlnCoordinateX" not in particles.columns
    original = read_table(TBL_4_1)
    expected_x = (original["x"].to_numpy() + original["dx"].to_numpy() - 1 - 2000) * 1.17
    np.testing.assert_allclose(particles["rlnCenteredCoordinateXAngst"], expected_x, atol=1e-3)

    # back with --tomogram-size
    back = tmp_path / "back_sizes.tbl"
    rc, _, err = run(capsys, "star2tbl", star, back, "--tomogram-size", *size)
    assert (rc, err) == (0, "")
    result = read_table(back)
    np.testing.assert_allclose(particle_positions(result), particle_positions(original), atol=1e-3)
    assert rotation_angle_deg(table_rotations(result), table_rotations(original)).max() < 1e-4

    # back with a RELION 5 tomograms.star
    names = sorted(particles["rlnTomoName"].unique())
    tomograms = tmp_path / "tomograms.star"
    write_star(
        tomograms,
        {"global": relion_tomograms_table(dict.fromkeys(names, (4000, 4000, 2000)), 1.17)},
    )
    back = tmp_path / "back_tomograms.tbl"
    rc, _, err = run(capsys, "star2tbl", star, back, "--tomograms", tomograms)
    assert (rc, err) == (0, "")
    result = read_table(back)
    np.testing.assert_allclose(particle_positions(result), particle_positions(original), atol=1e-3)
    assert rotation_angle_deg(table_rotations(result), table_rotations(original)).max() < 1e-4
    np.testing.assert_array_equal(result["tomo"], original["tomo"])


@needs_real
def test_tbl2star_names_from_doc(tmp_path, capsys):
    numbers = sorted(set(read_table(TBL_4_1)["tomo"]))
    doc = tmp_path / "tomograms.doc"
    write_doc(doc, {n: f"/data/tomograms/Position_{n}.rec" for n in numbers})
    star = tmp_path / "named.star"
    rc, _, err = run(
        capsys,
        "tbl2star",
        TBL_4_1,
        star,
        "--relion",
        "4",
        "--pixel-size",
        "1.17",
        "--tomograms",
        doc,
    )
    assert (rc, err) == (0, "")
    particles = read_star(star)["particles"]
    assert set(particles["rlnTomoName"]) == {f"Position_{n}" for n in numbers}
    assert particles["rlnTomoParticleName"].iloc[0] == "Position_86/1"


def test_tbl2star_relion5_sizes_from_doc_tomograms(tmp_path, capsys, monkeypatch):
    """Sizes come from the MRC headers of the tomograms a .doc names (relative to the .doc)."""
    table = small_table(tmp_path / "t.tbl", tomos=(1, 1, 3), apix=2.0)
    (tmp_path / "rec").mkdir()
    write_mrc(tmp_path / "rec" / "TS_01.mrc", np.zeros((4, 6, 8), np.float32), 2.0)  # x 8, y 6, z 4
    write_mrc(tmp_path / "rec" / "TS_03.mrc", np.zeros((10, 12, 14), np.float32), 2.0)
    write_doc(tmp_path / "t.doc", {1: "rec/TS_01.mrc", 3: "rec/TS_03.mrc"})
    monkeypatch.chdir(tmp_path.parent)  # the relative paths only resolve next to the .doc
    star = tmp_path / "t.star"
    rc, _, err = run(
        capsys, "tbl2star", tmp_path / "t.tbl", star, "--tomograms", tmp_path / "t.doc"
    )
    assert (rc, err) == (0, "")
    particles = read_star(star)["particles"]
    assert list(particles["rlnTomoName"]) == ["TS_01", "TS_01", "TS_03"]
    size = np.array([[8, 6, 4], [8, 6, 4], [14, 12, 10]], dtype=np.float64)
    expected = (table[["x", "y", "z"]].to_numpy() - 1 - size / 2) * 2.0
    cols = [f"rlnCenteredCoordinate{a}Angst" for a in "XYZ"]
    np.testing.assert_allclose(particles[cols].to_numpy(np.float64), expected, atol=1e-6)


def test_tbl2star_names_from_sample_list(tmp_path, capsys):
    small_table(tmp_path / "t.tbl", tomos=(7, 1, 7))
    samples = tmp_path / "tomograms.tsv"
    samples.write_text(
        "name\ttilt_series\tmdoc\ttomo_number\n"
        "TS_01\tts/TS_01.mrc\tts/TS_01.mrc.mdoc\t1\n"
        "lamella_b\tts/b.mrc\tts/b.mrc.mdoc\t7\n"
    )
    star = tmp_path / "t.star"
    rc, _, err = run(
        capsys, "tbl2star", tmp_path / "t.tbl", star, "--relion", "4", "--tomograms", samples
    )
    assert (rc, err) == (0, "")
    assert list(read_star(star)["particles"]["rlnTomoName"]) == ["lamella_b", "TS_01", "lamella_b"]

    # without tomo_number the trailing digits of the name are the number
    samples.write_text("name\ttilt_series\tmdoc\nTS_1\ta.mrc\ta.mdoc\nTS_7\tb.mrc\tb.mdoc\n")
    rc, _, err = run(
        capsys, "tbl2star", tmp_path / "t.tbl", star, "--relion", "4", "--tomograms", samples
    )
    assert (rc, err) == (0, "")
    assert list(read_star(star)["particles"]["rlnTomoName"]) == ["TS_7", "TS_1", "TS_7"]


def test_tbl2star_binning_gives_unbinned_pixel_size(tmp_path, capsys):
    """--pixel-size (and the apix column) is the pixel size of the binned table coordinates."""
    table = small_table(tmp_path / "bin4.tbl", apix=5.4)
    star, back = tmp_path / "bin4.star", tmp_path / "back.tbl"
    rc, out, err = run(
        capsys, "tbl2star", tmp_path / "bin4.tbl", star, "--relion", "4", "--binning", "4"
    )
    assert (rc, err) == (0, "")
    assert "1.35" in out
    blocks = read_star(star)
    assert float(blocks["optics"]["rlnTomoTiltSeriesPixelSize"].iloc[0]) == pytest.approx(1.35)
    np.testing.assert_allclose(blocks["particles"]["rlnCoordinateX"], table["x"] * 4, atol=1e-6)
    rc, _, err = run(capsys, "star2tbl", star, back)
    assert (rc, err) == (0, "")
    np.testing.assert_allclose(read_table(back)["x"], table["x"] * 4, atol=1e-5)
    np.testing.assert_allclose(read_table(back)["apix"], 1.35)


# ----------------------------------------------------------------------------- star2tbl on real files


@needs_real
def test_star2tbl_real_4_1_matches_its_table(tmp_path, capsys):
    out, doc = tmp_path / "4_1.tbl", tmp_path / "4_1.doc"
    rc, stdout, err = run(capsys, "star2tbl", STAR_4_1, out, "--doc", doc)
    assert (rc, err) == (0, "")
    assert "6396 particles from 50 tomograms" in stdout
    result, original = read_table(out), read_table(TBL_4_1)
    np.testing.assert_allclose(particle_positions(result), particle_positions(original), atol=1e-3)
    assert rotation_angle_deg(table_rotations(result), table_rotations(original)).max() < 1e-3
    tomo_map = read_doc(doc)
    assert len(tomo_map) == 50
    assert all(name.startswith("Position_") for name in tomo_map.values())


@needs_real
def test_star2tbl_real_refine(tmp_path, capsys):
    out, doc = tmp_path / "refine.tbl", tmp_path / "refine.doc"
    rc, stdout, err = run(capsys, "star2tbl", REFINE, out, "--doc", doc)
    assert (rc, err) == (0, "")
    assert "300 particles from 1 tomogram" in stdout
    blocks = read_star(REFINE)
    particles = blocks["particles"]
    apix = float(blocks["optics"]["rlnTomoTiltSeriesPixelSize"].iloc[0])
    result = read_table(out)
    assert len(result) == 300
    assert set(result["tomo"]) == {115}
    assert read_doc(doc) == {115: "TS_115"}
    expected_x = (
        particles["rlnCoordinateX"].to_numpy(float)
        - particles["rlnOriginXAngst"].to_numpy(float) / apix
    )
    np.testing.assert_allclose(result["x"], expected_x, atol=1e-3)
    assert rotation_angle_deg(table_rotations(result), star_rotations(particles)).max() < 1e-3


@needs_real
def test_star2tbl_real_warp_relion31_with_pixel_size(tmp_path, capsys):
    out, doc = tmp_path / "warp.tbl", tmp_path / "warp.doc"
    rc, stdout, err = run(capsys, "star2tbl", WARP, out, "--doc", doc, "--pixel-size", "5")
    assert (rc, err) == (0, "")
    assert "57 particles from 1 tomogram" in stdout
    particles = read_star(WARP)["particles"]
    result = read_table(out)
    expected = particles[[f"rlnCoordinate{a}" for a in "XYZ"]].to_numpy(float) - (
        particles[[f"rlnOrigin{a}Angst" for a in "XYZ"]].to_numpy(float) / 5.0
    )
    np.testing.assert_allclose(particle_positions(result), expected, atol=1e-3)
    assert rotation_angle_deg(table_rotations(result), star_rotations(particles)).max() < 1e-3
    assert list(read_doc(doc).values())[0].endswith("TS_01.mrc.tomostar")


@needs_real
def test_star2tbl_real_warp_relion31_default(tmp_path, capsys):
    """The pixel size comes from rlnImagePixelSize (5 Å) when rlnTomoTiltSeriesPixelSize is absent."""
    out, explicit = tmp_path / "warp.tbl", tmp_path / "warp_explicit.tbl"
    rc, _, err = run(capsys, "star2tbl", WARP, out)
    assert (rc, err) == (0, "")
    assert run(capsys, "star2tbl", WARP, explicit, "--pixel-size", "5")[0] == 0
    assert len(read_table(out)) == 57
    np.testing.assert_allclose(particle_positions(read_table(out)), particle_positions(read_table(explicit)), atol=1e-6)


# ----------------------------------------------------------------------------- info


@needs_real
@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        ("mdoc/TS_01.mrc.mdoc", ["41 images", "tilt axis 85.3", "5.4 Å", "-60.00 .. 60.00"]),
        ("dynamo/relion2dynamo/4_1.tbl", ["6396 particles", "42 columns", "tomograms: 37"]),
        ("dynamo/relion2dynamo/4_1.star", ["6396 rows", "50 distinct rlnTomoName"]),
        ("dynamo/pytom_em/int2.em", ["(1, 64, 64)", "int16"]),
        ("imod/cets_imod_TS_03/TS_03.xf", ["40 views", "85.26"]),
        ("imod/cets_imod_TS_03/TS_03.tlt", ["40 tilts", "-57.00 .. 60.00"]),
        ("imod/cets_imod_TS_03/TS_03_plain_estimation.defocus", ["version 2", "40 entries"]),
        ("dynamo/dynamotable/tmap_complex.doc", ["48 tomograms"]),
    ],
)
def test_info_real_files(capsys, rel, expected):
    rc, out, err = run(capsys, "info", REAL / rel)
    assert (rc, err) == (0, "")
    assert out.startswith(Path(rel).name)
    for text in expected:
        assert text in out, (text, out)


def test_info_written_mrc_and_cmm(tmp_path, capsys):
    mrc = tmp_path / "vol.mrc"
    write_mrc(mrc, np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6), 1.35)
    cmm = tmp_path / "markers.cmm"
    write_cmm(
        cmm,
        pd.DataFrame({"x_angstrom": [1.0, 2.0, 30.0], "y_angstrom": 0.0, "z_angstrom": 5.0}),
        "beads",
    )
    rc, out, err = run(capsys, "info", mrc, cmm)
    assert (rc, err) == (0, "")
    assert "vol.mrc" in out and "(4, 5, 6)" in out and "1.35 Å" in out and "max 119" in out
    assert "markers.cmm" in out and "3 markers in 1 set" in out and "'beads'" in out


# ----------------------------------------------------------------------------- synth


def test_synth_tiny_and_info(tmp_path, capsys):
    outdir = tmp_path / "demo"
    rc, out, err = run(capsys, "synth", outdir, "--preset", "tiny", "--seed", "3")
    assert (rc, err) == (0, "")
    manifest = json.loads((outdir / "truth" / "manifest.json").read_text())
    assert manifest["seed"] == 3
    assert f"{manifest['n_particles']} particles" in out
    files = [
        "tomograms.tsv",
        "tiltseries/TS_01.mrc",
        "tiltseries/TS_01.mrc.mdoc",
        "truth/unit_map.mrc",
        "truth/TS_01/particles.tbl",
    ]
    for rel in files:
        assert (outdir / rel).is_file(), rel
    assert list(outdir.rglob(".*.part*")) == []
    rc, out, err = run(capsys, "info", *(outdir / rel for rel in files[1:]))
    assert (rc, err) == (0, "")
    assert "MRC image stack: shape (z, y, x) (21, 128, 128)" in out
    assert "21 images" in out and "10.8 Å" in out
    assert f"Dynamo table: {manifest['n_particles']} particles" in out


def test_synth_rejects_bad_options(tmp_path, capsys):
    rc, _, err = run(capsys, "synth", tmp_path / "x", "--preset", "tiny", "--n-tiltseries", "0")
    assert_one_clean_error(rc, err, "--n-tiltseries", "at least 1")
    rc, _, err = run(capsys, "synth", tmp_path / "x", "--preset", "tiny", "--snr", "-1")
    assert_one_clean_error(rc, err, "--snr", "positive")
    (tmp_path / "afile").write_text("")
    rc, _, err = run(capsys, "synth", tmp_path / "afile", "--preset", "tiny")
    assert_one_clean_error(rc, err, "afile", "not a folder")
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- bad input


def test_info_truncated_mrc(tmp_path, capsys):
    path = tmp_path / "cut.mrc"
    write_mrc(path, np.ones((10, 32, 32), np.float32), 2.0)
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size * 2 // 3)
    rc, out, err = run(capsys, "info", path)
    assert_one_clean_error(rc, err, "cut.mrc", "not a readable MRC file")
    assert out == ""


@needs_real
def test_info_header_only_mrc(capsys):
    rc, _, err = run(capsys, "info", REAL / "maps_models" / "pytom" / "header_only.mrc")
    assert_one_clean_error(rc, err, "header_only.mrc", "not a readable MRC file")


@needs_real
def test_tbl2star_table_with_short_row(tmp_path, capsys):
    lines = TBL_4_1.read_text().splitlines()[:20]
    lines.insert(10, " ".join(lines[10].split()[:10]))
    table = tmp_path / "short_row.tbl"
    table.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "p.star"
    rc, _, err = run(capsys, "tbl2star", table, out, "--relion", "4", "--pixel-size", "1.17")
    assert_one_clean_error(rc, err, "short_row.tbl", "row 11", "10 columns", "42")
    assert_no_output(out)


def test_info_mdoc_without_tilt_angle(tmp_path, capsys):
    mdoc = tmp_path / "no_tilt.mrc.mdoc"
    mdoc.write_text(
        "PixelSpacing = 5.4\nImageFile = x.mrc\n\n"
        "[ZValue = 0]\nExposureDose = 3\nMagnification = 53000\n\n"
        "[ZValue = 1]\nExposureDose = 3\nMagnification = 53000\n"
    )
    rc, out, err = run(capsys, "info", mdoc)
    assert_one_clean_error(rc, err, "no_tilt.mrc.mdoc", "TiltAngle")
    assert out == ""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "data_particles\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n1 2 3\n",
            "rlnTomoName",
        ),
        (
            "data_particles\nloop_\n_rlnTomoName #1\n_rlnAngleRot #2\nTS_01 3\nTS_01 4\n",
            "rlnCoordinateX",
        ),
    ],
)
def test_star2tbl_star_without_needed_columns(tmp_path, capsys, text, problem):
    star = tmp_path / "lacking.star"
    star.write_text(text)
    out, doc = tmp_path / "lacking.tbl", tmp_path / "lacking.doc"
    rc, _, err = run(capsys, "star2tbl", star, out, "--doc", doc)
    assert_one_clean_error(rc, err, "lacking.star", problem)
    assert_no_output(out)
    assert_no_output(doc)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["info", "{d}/missing.mrc"], "missing.mrc"),
        (["info", "{d}/missing.mdoc"], "missing.mdoc"),
        (["tbl2star", "{d}/missing.tbl", "{d}/out.star", "--relion", "4"], "missing.tbl"),
        (["star2tbl", "{d}/missing.star", "{d}/out.tbl"], "missing.star"),
    ],
)
def test_missing_input_file(tmp_path, capsys, args, name):
    rc, _, err = run(capsys, *(a.format(d=tmp_path) for a in args))
    assert_one_clean_error(rc, err, name, "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_missing_option_files(tmp_path, capsys):
    small_table(tmp_path / "t.tbl")
    out = tmp_path / "o.star"
    rc, _, err = run(
        capsys, "tbl2star", tmp_path / "t.tbl", out, "--tomograms", tmp_path / "none.doc"
    )
    assert_one_clean_error(rc, err, "none.doc", "does not exist")
    rc, _, err = run(
        capsys, "tbl2star", tmp_path / "t.tbl", out, "--tomograms", tmp_path / "none.tsv"
    )
    assert_one_clean_error(rc, err, "none.tsv", "does not exist")
    assert_no_output(out)


@needs_real
def test_tbl2star_relion5_without_sizes_says_how_to_fix(tmp_path, capsys):
    out = tmp_path / "r5.star"
    rc, _, err = run(capsys, "tbl2star", TBL_4_1, out, "--pixel-size", "1.17")
    assert_one_clean_error(rc, err, "4_1.tbl", "tomogram sizes", "--tomogram-size", "--relion 4")
    assert len(err) < 600  # the 37 unknown names are abbreviated
    assert_no_output(out)


def test_tbl2star_without_pixel_size(tmp_path, capsys):
    small_table(tmp_path / "t.tbl", apix=0.0)
    out = tmp_path / "o.star"
    rc, _, err = run(capsys, "tbl2star", tmp_path / "t.tbl", out, "--relion", "4")
    assert_one_clean_error(rc, err, "t.tbl", "apix", "--pixel-size")
    assert_no_output(out)


def test_tbl2star_doc_missing_a_tomo_number(tmp_path, capsys):
    small_table(tmp_path / "t.tbl", tomos=(1, 2, 3))
    write_doc(tmp_path / "t.doc", {1: "a/TS_01.mrc", 3: "a/TS_03.mrc"})
    out = tmp_path / "o.star"
    rc, _, err = run(
        capsys,
        "tbl2star",
        tmp_path / "t.tbl",
        out,
        "--relion",
        "4",
        "--tomograms",
        tmp_path / "t.doc",
    )
    assert_one_clean_error(rc, err, "t.doc", "tomo number", "2")
    assert_no_output(out)


def test_star2tbl_relion5_without_sizes_or_pixel_size(tmp_path, capsys):
    small_table(tmp_path / "t.tbl", tomos=(1, 1, 1))
    star = tmp_path / "t.star"
    assert (
        run(capsys, "tbl2star", tmp_path / "t.tbl", star, "--tomogram-size", "10", "10", "10")[0]
        == 0
    )
    out = tmp_path / "o.tbl"
    rc, _, err = run(capsys, "star2tbl", star, out)
    assert_one_clean_error(rc, err, "t.star", "tomogram sizes", "--tomograms", "--tomogram-size")
    assert_no_output(out)
    # a tomograms.star without the particles' tomogram
    tomograms = tmp_path / "tomograms.star"
    write_star(tomograms, {"global": relion_tomograms_table({"other": (10, 10, 10)}, 2.0)})
    rc, _, err = run(capsys, "star2tbl", star, out, "--tomograms", tomograms)
    assert_one_clean_error(rc, err, "tomograms.star", "tomo_001")
    assert_no_output(out)
    # no pixel size anywhere
    star.write_text(
        "data_particles\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n"
        "_rlnCoordinateZ #4\n_rlnOriginXAngst #5\nTS_01 1 2 3 4.0\n"
    )
    rc, _, err = run(capsys, "star2tbl", star, out)
    assert_one_clean_error(rc, err, "t.star", "rlnTomoTiltSeriesPixelSize", "--pixel-size")
    assert_no_output(out)


def test_info_unknown_extension(tmp_path, capsys):
    path = tmp_path / "notes.xyz"
    path.write_text("hello\n")
    rc, out, err = run(capsys, "info", path)
    assert_one_clean_error(rc, err, "notes.xyz", "unknown file type", ".mrc")
    assert out == ""


def test_output_path_is_a_folder(tmp_path, capsys):
    small_table(tmp_path / "t.tbl")
    (tmp_path / "taken.star").mkdir()
    rc, _, err = run(
        capsys, "tbl2star", tmp_path / "t.tbl", tmp_path / "taken.star", "--relion", "4"
    )
    assert_one_clean_error(rc, err, "taken.star", "directory")
    assert list(tmp_path.glob(".*.part*")) == []
