"""Particle stack, Dynamo data folder and RELION subtomogram export: round trips, names, star columns."""

import io
from pathlib import Path

import emfile
import mrcfile
import numpy as np
import pandas as pd
import pytest

from stasnake.errors import InputError
from stasnake.geometry.relion import relion_particles_to_table
from stasnake.io.dynamo_doc import read_doc
from stasnake.io.dynamo_table import new_table, particle_positions, read_table
from stasnake.io.em import read_em, read_em_header
from stasnake.io.particle_export import (
    dynamo_particle_filename,
    export_dynamo_data_folder,
    export_relion_subtomograms,
    read_particle_stack,
    relion_subtomogram_path,
    write_particle_stack,
)
from stasnake.io.star import read_relion_particles, read_star
from stasnake.sta.poses import table_poses

REAL_EM = Path("/work/shared/realdata/maps_models/pytom/human_ribo_21A.em")


def _stack(n=5, b=8, seed=0):
    rng = np.random.default_rng(seed)
    boxes = rng.standard_normal((n, b, b, b)).astype(np.float32)
    boxes[:, 1, 2, 3] = 10.0 + np.arange(n)  # an asymmetric marker voxel [z=1, y=2, x=3]
    return boxes


def _table(n=5, seed=0):
    rng = np.random.default_rng(seed)
    xyz = rng.integers(20, 100, (n, 3)).astype(float)
    table = new_table(
        n, x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], tomo=[1, 1, 2, 2, 2][:n], reg=3, apix=5.4
    )
    table[["dx", "dy", "dz"]] = rng.uniform(-0.5, 0.5, (n, 3))
    table[["tdrot", "tilt", "narot"]] = rng.uniform([-180, 0, -180], [180, 180, 180], (n, 3))
    table["tag"] = [3, 4, 10, 11, 123456][:n]
    return table


# ---------------------------------------------------------------------- stack
@pytest.mark.parametrize("n", [1, 5])
def test_stack_is_a_valid_volume_stack(tmp_path, n):
    boxes = _stack(n)
    path = tmp_path / "particles.mrc"
    write_particle_stack(path, iter(boxes), n, 8, 5.4, chunk_bytes=3 * 8**3 * 4)  # 3 boxes/chunk
    assert mrcfile.validate(str(path), print_file=io.StringIO())
    with mrcfile.mmap(path) as m:
        assert m.data.shape == (n, 8, 8, 8) and m.is_volume_stack()
        assert (int(m.header.nz), int(m.header.mz), int(m.header.ispg)) == (8 * n, 8, 401)
        assert m.voxel_size.z == pytest.approx(5.4)
        assert float(m.header.dmean) == pytest.approx(float(boxes.mean()), rel=1e-5)
        np.testing.assert_array_equal(m.data, boxes)
    data, apix = read_particle_stack(path)
    assert apix == pytest.approx(5.4) and data.shape == (n, 8, 8, 8)
    # box i lies in z planes i*b .. (i+1)*b - 1 of the file (docs/particles.md)
    raw = np.memmap(path, np.float32, "r", offset=1024, shape=(n * 8, 8, 8))
    np.testing.assert_array_equal(raw[8 * (n - 1) :], boxes[n - 1])


def test_stack_wrong_count_leaves_no_file(tmp_path):
    path = tmp_path / "p.mrc"
    with pytest.raises(ValueError, match="got 4 boxes for a stack of 5"):
        write_particle_stack(path, iter(_stack(4)), 5, 8, 1.0)
    with pytest.raises(ValueError, match="more than 3"):
        write_particle_stack(path, iter(_stack(4)), 3, 8, 1.0)
    assert list(tmp_path.iterdir()) == []
    # an empty stack (no particle inside the tomogram)
    write_particle_stack(path, iter([]), 0, 8, 1.0)
    with mrcfile.open(path) as m:
        assert m.data.shape[0] == 0


# ---------------------------------------------------------------------- Dynamo
def test_dynamo_names():
    assert dynamo_particle_filename(12) == "particle_00012.em"
    assert dynamo_particle_filename(123456) == "particle_123456.em"
    assert dynamo_particle_filename(7, tag_padding=6) == "particle_000007.em"


def test_dynamo_data_folder_round_trip(tmp_path):
    boxes, table = _stack(), _table()
    write_particle_stack(tmp_path / "particles.mrc", iter(boxes), 5, 8, 5.4)
    folder = export_dynamo_data_folder(tmp_path / "particles.mrc", table, tmp_path / "data",
                                       tomogram_paths={1: "tomograms/TS_01.mrc", 2: "tomograms/TS_02.mrc"})  # fmt: skip
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["crop.tbl", "indices_column20.doc", "particle_00003.em", "particle_00004.em",
                     "particle_00010.em", "particle_00011.em", "particle_123456.em"]  # fmt: skip
    for i, tag in enumerate(table["tag"]):
        path = folder / dynamo_particle_filename(tag)
        header = read_em_header(path)
        assert (header["machine"], header["dtype_code"], header["shape"]) == (6, 5, (8, 8, 8))
        assert header["pixel_size_angstrom"] == pytest.approx(5.4)
        np.testing.assert_array_equal(read_em(path)[0], boxes[i])
        _, em_data = emfile.read(path)  # independent reader
        np.testing.assert_array_equal(em_data, boxes[i])
        # x fastest on disk, as MATLAB/Dynamo read it: element (x=3, y=2, z=1) of the marker voxel
        raw = np.fromfile(path, "<f4", offset=512)
        assert raw[3 + 2 * 8 + 1 * 64] == 10.0 + i
    pd.testing.assert_frame_equal(
        read_table(folder / "crop.tbl")[table.columns], table, check_dtype=False, atol=1e-6
    )
    assert read_doc(folder / "indices_column20.doc") == {
        1: "tomograms/TS_01.mrc",
        2: "tomograms/TS_02.mrc",
    }
    with pytest.raises(FileExistsError):
        export_dynamo_data_folder(boxes, table, folder)
    export_dynamo_data_folder(boxes[:2], table[:2], folder, pixel_size_angstrom=2.7, overwrite=True)
    assert sorted(p.name for p in folder.iterdir()) == [
        "crop.tbl",
        "particle_00003.em",
        "particle_00004.em",
    ]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_em_header_matches_real_dynamo_tom_files(tmp_path):
    """Our .em header has the machine/type bytes and layout of real TOM/Dynamo files (PyTom test data)."""
    if not REAL_EM.exists():
        pytest.skip("real .em file not available")
    real = REAL_EM.read_bytes()[:4]
    export_dynamo_data_folder(_stack(1, 32), _table(1), tmp_path / "d")
    ours = (tmp_path / "d" / "particle_00003.em").read_bytes()
    assert ours[:4] == real == bytes([6, 0, 0, 5])
    assert len(ours) == 512 + 4 * 32**3


def test_dynamo_bad_input(tmp_path):
    table = _table()
    table.loc[2, "tag"] = 4
    with pytest.raises(InputError, match="duplicate tags"):
        export_dynamo_data_folder(_stack(), table, tmp_path / "d")
    with pytest.raises(InputError, match="does not match a table of 4 rows"):
        export_dynamo_data_folder(_stack(), _table()[:4], tmp_path / "d")
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------------- RELION
def test_relion_path_rule():
    assert relion_subtomogram_path("TS_01/12", "TS_01") == "Subtomograms/TS_01/12_data.mrc"
    assert relion_subtomogram_path("12", "TS_01") == "Subtomograms/TS_01/12_data.mrc"


@pytest.mark.parametrize("version", [4, 5])
def test_relion_export_round_trip(tmp_path, version):
    boxes, table = _stack(), _table()
    write_particle_stack(tmp_path / "particles.mrc", iter(boxes), 5, 8, 5.4)
    names = {1: "TS_01", 2: "TS_02"}
    sizes = {"TS_01": (200, 180, 100), "TS_02": (210, 190, 90)}
    out = tmp_path / "Extract" / "job001"
    blocks = export_relion_subtomograms(
        tmp_path / "particles.mrc",
        table,
        out,
        names,
        5.4,
        version=version,
        tomogram_sizes_xyz=sizes,
        optics={"rlnVoltage": 300.0},
        project_dir=tmp_path,
    )
    expected = [
        f"Extract/job001/Subtomograms/{names[t]}/{g}_data.mrc"
        for t, g in zip(table.tomo, table.tag, strict=True)
    ]
    assert blocks["particles"]["rlnImageName"].tolist() == expected
    for i, name in enumerate(expected):
        with mrcfile.open(tmp_path / name) as m:
            np.testing.assert_array_equal(m.data, -boxes[i])  # protein-bright for RELION
            assert m.voxel_size.x == pytest.approx(5.4)
    assert list(blocks) == list(read_star(out / "particles.star"))
    blocks = read_star(out / "particles.star")
    assert list(blocks) == (
        ["general", "optics", "particles"] if version == 5 else ["optics", "particles"]
    )
    optics = blocks["optics"].iloc[0]
    assert (
        optics["rlnImageDimensionality"],
        optics["rlnImageSize"],
        optics["rlnCtfDataAreCtfPremultiplied"],
    ) == (3, 8, 0)
    assert optics["rlnImagePixelSize"] == pytest.approx(5.4) and optics[
        "rlnVoltage"
    ] == pytest.approx(300.0)
    if version == 5:
        assert int(blocks["general"]["rlnTomoSubTomosAre2DStacks"].iloc[0]) == 0
    star = blocks["particles"]
    assert star["rlnTomoParticleName"].tolist() == [
        f"{names[t]}/{g}" for t, g in zip(table.tomo, table.tag, strict=True)
    ]
    assert star["rlnRandomSubset"].tolist() == (table["tag"] % 2 + 1).tolist()
    np.testing.assert_allclose(star["rlnOriginXAngst"], -table["dx"] * 5.4, atol=1e-6)
    # RELION's particle centre (coordinate - origin) is the table's x + dx, and the poses survive
    optics_block, particle_block = read_relion_particles(out / "particles.star")
    back, _ = relion_particles_to_table(particle_block, optics_block, tomo_numbers={"TS_01": 1, "TS_02": 2},
                                        tomogram_sizes_xyz=sizes)  # fmt: skip
    np.testing.assert_allclose(particle_positions(back), particle_positions(table), atol=1e-4)
    np.testing.assert_allclose(table_poses(back)[0], table_poses(table)[0], atol=1e-6)


def test_relion_export_without_star_file(tmp_path):
    blocks = export_relion_subtomograms(_stack(), _table(), tmp_path, {1: "A", 2: "B"}, 2.0, version=4,
                                        binning=2.0, invert_contrast=False, star_name=None)  # fmt: skip
    assert not (tmp_path / "particles.star").exists()
    assert blocks["optics"]["rlnImagePixelSize"].iloc[0] == pytest.approx(4.0)
    with mrcfile.open(tmp_path / "Subtomograms" / "B" / "123456_data.mrc") as m:
        np.testing.assert_array_equal(m.data, _stack()[4])


def test_relion_export_needs_sizes_for_version_5(tmp_path):
    with pytest.raises(InputError, match="tomogram sizes"):
        export_relion_subtomograms(_stack(), _table(), tmp_path, {1: "a", 2: "b"}, 5.4, version=5)
