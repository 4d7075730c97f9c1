"""Finding each tilt's movie from the mdoc's SubFramePath, and reading MRC/TIFF movies."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stasnake.errors import InputError
from stasnake.io.mdoc import read_mdoc
from stasnake.io.mrc import write_mrc
from stasnake.tilt.movie_files import find_movies, frame_file_name, read_movie

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def test_frame_file_name_windows_and_posix():
    assert frame_file_name(r"D:\DATA\Flo\HGK149_20151130\frames\TS_01_000_0.0.mrc") == "TS_01_000_0.0.mrc"
    assert frame_file_name("/data/frames/TS_01_001_3.0.tif ") == "TS_01_001_3.0.tif"


@pytest.mark.skipif(not (REALDATA / "mdoc/TS_01.mrc.mdoc").exists(), reason="shared/realdata not present")
def test_real_empiar_mdoc_names_every_movie(tmp_path):
    mdoc = REALDATA / "mdoc/TS_01.mrc.mdoc"
    _, sections = read_mdoc(mdoc)
    with pytest.raises(InputError, match=r"41 of 41 movies named in .*TS_01.mrc.mdoc are missing: TS_01_000_0.0.mrc"):
        find_movies(sections, tmp_path, mdoc)
    for value in sections.SubFramePath:
        (tmp_path / frame_file_name(value)).write_bytes(b"")
    paths = find_movies(sections.sample(frac=1.0, random_state=0), tmp_path, mdoc)
    assert [p.name for p in paths[:3]] == ["TS_01_000_0.0.mrc", "TS_01_001_3.0.mrc", "TS_01_002_-3.0.mrc"]
    assert len(paths) == 41


@pytest.mark.parametrize(
    "paths, expected",
    [
        (None, "has no SubFramePath entries"),
        (["a.mrc", ""], "section ZValue = 1 has no SubFramePath"),
        (["a.mrc", "b.eer"], "movie 'b.eer' is not MRC or TIFF"),
        (["x\\a.mrc", "y\\a.mrc"], "names the same movie for several sections: ['a.mrc']"),
    ],
)
def test_bad_mdoc_entries_are_named(tmp_path, paths, expected):
    sections = pd.DataFrame({"ZValue": [0, 1], "TiltAngle": [0.0, 3.0]})
    if paths is not None:
        sections["SubFramePath"] = paths
    with pytest.raises(InputError, match=re.escape(expected)) as info:
        find_movies(sections, tmp_path, "TS_09.mdoc")
    assert "TS_09.mdoc" in str(info.value)


def test_read_mrc_and_tiff_movies(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    frames = np.random.default_rng(0).poisson(2.0, (5, 12, 10)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "m.tif", frames, compression="zlib")
    write_mrc(tmp_path / "m.mrc", frames.astype(np.float32), 1.0, stack=True)
    np.testing.assert_array_equal(read_movie(tmp_path / "m.tif"), frames)
    np.testing.assert_array_equal(read_movie(tmp_path / "m.mrc"), frames)
    (tmp_path / "bad.mrc").write_bytes(b"not an mrc file" * 100)
    with pytest.raises(InputError, match="bad.mrc: cannot be read as a movie"):
        read_movie(tmp_path / "bad.mrc")
