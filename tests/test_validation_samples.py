"""The sample list: good rows load; each kind of bad row names the file, row and problem."""

import re

import pytest

from stasnake.errors import InputError
from stasnake.validation.samples import load_samples, parse_exclude_views

HEADER = "name\ttilt_series\tmdoc"


@pytest.fixture
def files(tmp_path):
    for name in ("a.mrc", "a.mdoc", "b.mrc", "b.mdoc", "a.xf"):
        (tmp_path / name).write_text("x")
    return tmp_path


def write(tmp_path, text):
    path = tmp_path / "tomograms.tsv"
    path.write_text(text)
    return path


def test_good_list_fills_defaults(files):
    path = write(files, f"{HEADER}\talignment_xf\texclude_views\n"
                        f"TS_01\t{files}/a.mrc\t{files}/a.mdoc\t{files}/a.xf\t-60, 57\n"
                        f"TS_03\t{files}/b.mrc\t{files}/b.mdoc\t\t\n")  # fmt: skip
    samples = load_samples(path)
    assert list(samples.index) == ["TS_01", "TS_03"]
    assert samples.loc["TS_03", "tomo_number"] == 3
    assert samples.loc["TS_03", "alignment_xf"] is None
    assert parse_exclude_views(samples.loc["TS_01", "exclude_views"]) == [-60.0, 57.0]


@pytest.mark.parametrize(
    "body, expected",
    [
        ("TS_01\t{d}/a.mrc\t{d}/missing.mdoc\n", "row 1 (TS_01): mdoc file"),
        ("TS_01\t{d}/a.mrc\t{d}/a.mdoc\nTS_01\t{d}/b.mrc\t{d}/b.mdoc\n", "duplicate name 'TS_01'"),
        ("TS 01\t{d}/a.mrc\t{d}/a.mdoc\n", "row 1 (TS 01): name"),
        ("grid\t{d}/a.mrc\t{d}/a.mdoc\n", "no trailing number"),
        ("TS_01\t{d}/a.mrc\t\n", "column 'mdoc' is empty"),
        ("a_1\t{d}/a.mrc\t{d}/a.mdoc\nb_01\t{d}/b.mrc\t{d}/b.mdoc\n", "duplicate tomo_number 1"),
    ],
)
def test_bad_rows_are_named(files, body, expected):
    path = write(files, HEADER + "\n" + body.format(d=files))
    with pytest.raises(InputError, match=re.escape(expected)) as info:
        load_samples(path)
    assert str(path) in str(info.value)


def test_unknown_and_missing_columns(files):
    path = write(files, f"{HEADER}\tcolour\nTS_01\t{files}/a.mrc\t{files}/a.mdoc\tred\n")
    with pytest.raises(InputError, match=r"unknown column\(s\) \['colour'\]"):
        load_samples(path)
    path = write(files, f"name\ttilt_series\nTS_01\t{files}/a.mrc\n")
    with pytest.raises(InputError, match=r"missing required column\(s\) \['mdoc'\]"):
        load_samples(path)


@pytest.mark.parametrize(
    "column, value, expected",
    [
        ("thickness_px", "12.5", "not a valid int"),
        ("pixel_size_angstrom", "big", "not a valid float"),
        ("pixel_size_angstrom", "-1", "must be positive"),
        ("exclude_views", "-60,abc", "not a valid list of tilt angles"),
    ],
)
def test_wrong_types(files, column, value, expected):
    path = write(files, f"{HEADER}\t{column}\nTS_01\t{files}/a.mrc\t{files}/a.mdoc\t{value}\n")
    with pytest.raises(InputError, match=expected):
        load_samples(path)


def test_movie_rows(files):
    (files / "frames").mkdir()
    (files / "gain.mrc").write_text("x")
    path = write(files, "name\tmovies\tmdoc\tgain_reference\n"
                        f"TS_01\t{files}/frames\t{files}/a.mdoc\t{files}/gain.mrc\n")  # fmt: skip
    samples = load_samples(path)
    assert samples.loc["TS_01", "tilt_series"] is None
    assert samples.loc["TS_01", "movies"] == f"{files}/frames"


@pytest.mark.parametrize(
    "header, body, expected",
    [
        ("name\ttilt_series\tmovies\tmdoc", "TS_01\t{d}/a.mrc\t{d}/frames\t{d}/a.mdoc",
         "row 1 (TS_01): give exactly one of 'tilt_series'"),
        ("name\ttilt_series\tmovies\tmdoc", "TS_01\t\t\t{d}/a.mdoc", "give exactly one of"),
        ("name\tmovies\tmdoc", "TS_01\t{d}/a.mrc\t{d}/a.mdoc", "movies '{d}/a.mrc' is not a folder"),
        ("name\tmovies\tmdoc", "TS_01\t{d}/nothere\t{d}/a.mdoc", "movies folder '{d}/nothere' does not exist"),
        ("name\ttilt_series\tmdoc\tgain_reference", "TS_01\t{d}/a.mrc\t{d}/a.mdoc\t{d}/b.mrc",
         "'gain_reference' is only used with 'movies'"),
    ],
)  # fmt: skip
def test_bad_movie_rows(files, header, body, expected):
    (files / "frames").mkdir()
    path = write(files, header + "\n" + body.format(d=files) + "\n")
    with pytest.raises(InputError, match=re.escape(expected.format(d=files))):
        load_samples(path)
