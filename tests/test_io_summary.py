"""Tests for stasnake.io.summary."""

from pathlib import Path

import numpy as np
import pytest

from stasnake.errors import InputError
from stasnake.io.cmm import pixels_to_markers, write_cmm
from stasnake.io.dynamo_doc import write_vll
from stasnake.io.summary import summarize

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.mark.parametrize(
    ("rel", "expected"),
    [
        (
            "mdoc/TS_01.mrc.mdoc",
            ["41 images", "-60.00 .. 60.00", "step 3.00", "5.4 Å", "tilt axis 85.3"],
        ),
        ("maps_models/pytom/emd_1480.map.em_bin_4.em", ["(42, 42, 42)", "mean 0.1778", "float32"]),
        (
            "maps_models/pytom/human_ribo_mask_32_8_5.mrc",
            ["(32, 32, 32)", "pixel size 1 Å", "min 0"],
        ),
        ("dynamo/dynamo2m/example.tbl", ["4934 particles", "tomograms: 48"]),
        (
            "dynamo/relion2dynamo/refine.star",
            ["2 block(s)", "data_particles: 300 rows", "distinct rlnTomoName"],
        ),
        ("imod/cets_imod_TS_03/TS_03.xf", ["40 views", "mean 85.26"]),
        ("imod/cets_imod_TS_03/TS_03.tlt", ["40 tilts", "-57.00 .. 60.00"]),
        ("imod/pytom_match_pick/test_angles.rawtlt", ["tilts"]),
        (
            "imod/cets_imod_TS_03/TS_03_astigmatism_and_phase_shift.defocus",
            ["version 3 (flags 5)", "phase shift"],
        ),
        ("dynamo/dynamo2m/example.doc", ["54 tomograms"]),
        ("mdoc/montage_section.mdoc", ["MONTAGE"]),
    ],
)
def test_real_files(rel, expected):
    text = summarize(REAL / rel)
    assert text.splitlines()[0].startswith(Path(rel).name)
    for piece in expected:
        assert piece in text, (piece, text)


def test_cmm_and_vll(tmp_path):
    write_cmm(tmp_path / "m.cmm", pixels_to_markers(np.ones((4, 3)), 2.0))
    assert "4 markers in 1 set" in summarize(tmp_path / "m.cmm")
    write_vll(tmp_path / "v.vll", [{"path": "a.mrc", "apix": 1.35}, {"path": "b.mrc"}])
    text = summarize(tmp_path / "v.vll")
    assert "2 tomograms" in text and "apix" in text


def test_errors(tmp_path):
    p = tmp_path / "x.xyz"
    p.write_text("1")
    with pytest.raises(InputError, match="x.xyz.*unknown file type"):
        summarize(p)
    with pytest.raises(InputError, match="nope.mrc"):
        summarize(tmp_path / "nope.mrc")
    with pytest.raises(InputError, match="header_only.mrc"):
        summarize(REAL / "maps_models" / "pytom" / "header_only.mrc")
