"""Annotation checkpoints (stasnake.annotations) and ``stasnake prepare-view``."""

import numpy as np
import pytest

from stasnake.annotations import (
    ANNOTATION_STEPS,
    annotated_tilt_series,
    annotation_source,
    autopilot_enabled,
    format_missing_message,
    missing_annotations,
    prepare_view,
)
from stasnake.cli import main
from stasnake.io.mrc import read_mrc, write_mrc

TS = ["TS_01", "TS_02", "TS_03"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x\n")


def test_nothing_there_lists_every_file_with_exact_paths(workdir):
    missing = missing_annotations(TS, {})
    paths = [m.path for m in missing]
    assert paths == [
        "annotations/TS_01/dipoles.csv",
        "annotations/TS_02/dipoles.csv",
        "annotations/TS_03/dipoles.csv",
        "annotations/reference_center.cmm",
        "annotations/particle_centers.cmm",
    ]
    message = format_missing_message(missing)
    print(message)
    for m in missing:
        assert m.path in message
        assert m.prepare_command in message
        assert m.view_path in message
    assert message.startswith("5 annotation files are missing")
    assert "40 pixels" in message and "8 to 9 VLPs" in message and "defective" in message
    assert (
        "stasnake prepare-view results/tomograms/TS_02_bin2.mrc results/views/TS_02_bin2_view.mrc"
        in message
    )
    assert "--invert" in message and "--no-invert" in message
    assert "(here 2)" in message and "center_x,center_y,center_z,surface_x" in message
    assert "does not exist yet" in message
    assert "autopilot" in message
    prose = [line for line in message.splitlines() if "prepare:" not in line]
    assert max(len(line) for line in prose) <= 110


def test_existing_user_files_are_not_listed_and_map_readiness_is_reported(workdir):
    _touch(workdir / "annotations/TS_02/dipoles.csv")
    _touch(workdir / "annotations/reference_center.cmm")
    _touch(workdir / "results/tomograms/TS_01_bin2.mrc")
    missing = missing_annotations(TS, {})
    assert [(m.kind, m.tilt_series) for m in missing] == [
        ("dipoles", "TS_01"),
        ("dipoles", "TS_03"),
        ("particle_centers", None),
    ]
    assert [m.map_ready for m in missing] == [True, False, False]
    message = format_missing_message(missing)
    assert message.startswith("3 annotation files are missing")
    assert format_missing_message(missing[:1]).startswith("1 annotation file is missing")
    assert format_missing_message([]) == ""


def test_autopilot_covers_missing_files_but_user_files_win(workdir):
    _touch(workdir / "annotations/TS_01/dipoles.csv")
    assert missing_annotations(TS, {}, autopilot=True) == []
    assert (
        annotation_source("dipoles", "TS_01", autopilot=True).as_posix()
        == "annotations/TS_01/dipoles.csv"
    )
    src = annotation_source("dipoles", "TS_02", autopilot=True)
    assert src.as_posix() == "results/proposals/TS_02/dipoles.csv"
    assert annotation_source("dipoles", "TS_02", autopilot=False) is None
    assert annotation_source("reference_center", autopilot=True).as_posix() == (
        "results/proposals/reference_center.cmm"
    )
    # per-step autopilot from the config, and as a list of kinds
    config = {"annotations": {"autopilot": {"dipoles": True}}}
    left = missing_annotations(TS, config)
    assert [m.kind for m in left] == ["reference_center", "particle_centers"]
    assert autopilot_enabled("particle_centers", ["particle_centers"])
    assert not autopilot_enabled("dipoles", ["particle_centers"])
    assert annotated_tilt_series(TS, {}) == ["TS_01"]
    assert annotated_tilt_series(TS, config) == TS
    with pytest.raises(ValueError, match="unknown annotation kind"):
        annotation_source("vlps", "TS_01")


def test_config_overrides_binning_maps_and_folders(workdir):
    config = {
        "annotations": {
            "dipole_binning": 4,
            "maps": {"reference_center": "results/sta/ref/ite_3/average.mrc"},
            "view_lowpass_angstrom": {"reference_center": 25},
        }
    }
    missing = missing_annotations(["A"], config, annotations_dir="my_annots")
    by_kind = {m.kind: m for m in missing}
    assert by_kind["dipoles"].path == "my_annots/A/dipoles.csv"
    assert by_kind["dipoles"].map_path == "results/tomograms/A_bin4.mrc"
    assert "(here 4)" in format_missing_message(missing)
    ref = by_kind["reference_center"]
    assert ref.map_path == "results/sta/ref/ite_3/average.mrc"
    assert ref.prepare_command.endswith("--lowpass-angstrom 25 --invert")


def test_functions_never_write_into_annotations(workdir):
    (workdir / "annotations").mkdir()
    _touch(workdir / "annotations/TS_01/dipoles.csv")
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    for autopilot in (False, True):
        missing = missing_annotations(TS, {}, autopilot=autopilot)
        format_missing_message(missing)
        for kind, step in ANNOTATION_STEPS.items():
            annotation_source(kind, "TS_02" if step.per_tilt_series else None, autopilot=autopilot)
        annotated_tilt_series(TS, {}, autopilot=autopilot)
    after = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    assert after == before
    missing_annotations(TS, {}, annotations_dir="elsewhere")
    assert not (workdir / "elsewhere").exists()


def _two_frequency_volume(n=32, pixel=5.0):
    x = np.arange(n)
    low = np.cos(2 * np.pi * 2 * x / n)  # period n/2 px = 80 Å
    high = np.cos(2 * np.pi * 12 * x / n)  # period 2.67 px = 13.3 Å
    vol = np.broadcast_to(low + high, (n, n, n)).astype(np.float32) + 3.0
    return vol, low, high, pixel


def test_prepare_view_filters_normalises_and_inverts():
    vol, low, high, pixel = _two_frequency_volume()
    original = vol.copy()
    view = prepare_view(vol, pixel, lowpass_angstrom=30.0, invert=True)
    assert view.dtype == np.float32 and view.shape == vol.shape
    np.testing.assert_array_equal(vol, original)
    line = view[5, 7]
    expected = -low / low.std()
    print("max error of the filtered line:", np.abs(line - expected).max())
    np.testing.assert_allclose(line, expected, atol=1e-4)
    assert abs(view.mean()) < 1e-5 and abs(view.std() - 1) < 1e-4
    plain = prepare_view(vol, pixel, lowpass_angstrom=30.0, invert=False)
    np.testing.assert_allclose(plain, -view, atol=1e-6)
    # a low-pass finer than Nyquist keeps both frequencies
    both = prepare_view(vol, pixel, lowpass_angstrom=5.0, invert=False)[5, 7]
    np.testing.assert_allclose(both, (low + high) / (low + high).std(), atol=1e-4)
    assert np.all(prepare_view(np.ones((4, 4, 4)), 1.0, 10.0) == 0)
    with pytest.raises(ValueError):
        prepare_view(vol[0], pixel, 30.0)


def test_cli_prepare_view(tmp_path, capsys):
    vol, low, _, pixel = _two_frequency_volume()
    src, out = tmp_path / "avg.mrc", tmp_path / "views" / "avg_view.mrc"
    write_mrc(src, vol, pixel)
    assert main(["prepare-view", str(src), str(out), "--lowpass-angstrom", "30"]) == 0
    view, apix = read_mrc(out)
    assert apix == pytest.approx(pixel)
    np.testing.assert_allclose(view[0, 0], -low / low.std(), atol=1e-4)
    assert "inverted" in capsys.readouterr().out
    assert main(["prepare-view", str(src), str(out), "--no-invert"]) == 0
    assert read_mrc(out)[0][0, 0, 0] > 0
    capsys.readouterr()
    rc = main(["prepare-view", str(tmp_path / "nope.mrc"), str(tmp_path / "x.mrc")])
    err = capsys.readouterr().err
    assert rc == 2 and "nope.mrc" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.mrc").exists()
    assert main(["prepare-view", str(src), str(src)]) == 2
    assert main(["prepare-view", str(src), str(out), "--lowpass-angstrom", "0"]) == 2
