"""crop_particles: centring, edge policies, memory-mapped input."""

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from stasnake.sta.crop import crop_particles


def test_delta_crops_to_box_centre_and_remainder():
    tomo = np.zeros((30, 40, 50), np.float32)
    tomo[12, 20, 33] = 1.0  # table coords (34, 21, 13)
    for b in (8, 9):
        pos = [[34.3, 21.0, 12.6]]  # rounds to (34, 21, 13)
        parts, kept, rem = crop_particles(tomo, pos, b)
        assert parts.shape == (1, b, b, b) and parts.dtype == np.float32
        assert kept.tolist() == [True]
        assert np.unravel_index(np.argmax(parts[0]), parts[0].shape) == (b // 2, b // 2, b // 2)
        np.testing.assert_allclose(rem, [[0.3, 0.0, -0.4]], atol=1e-12)


def test_edge_policies():
    rng = np.random.default_rng(5)
    tomo = rng.normal(2.0, 1.0, (20, 20, 20)).astype(np.float32)
    pos = np.array([[10, 10, 10], [2, 10, 10], [10, 19, 10], [100, 10, 10]], float)
    parts, kept, rem = crop_particles(tomo, pos, 8, edge_policy="drop")
    assert kept.tolist() == [True, False, False, False]
    assert parts.shape == (1, 8, 8, 8) and rem.shape == (1, 3)
    parts, kept, _ = crop_particles(tomo, pos, 8, edge_policy="pad")
    assert kept.tolist() == [True, True, True, False]
    assert parts.shape == (3, 8, 8, 8)
    # particle at x = 2 (index 1): box x indices -3..4, the first 3 columns are padding
    inside = tomo[5:13, 5:13, 0:5]
    np.testing.assert_allclose(parts[1][:, :, 3:], inside)
    np.testing.assert_allclose(parts[1][:, :, :3], inside.mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="edge_policy"):
        crop_particles(tomo, pos, 8, edge_policy="wrap")


def test_reads_from_mrc_memmap(tmp_path):
    rng = np.random.default_rng(6)
    tomo = rng.standard_normal((16, 24, 32)).astype(np.float32)
    path = tmp_path / "t.mrc"
    with mrcfile.new(path) as m:
        m.set_data(tomo)
    pos = [[16.0, 12.0, 8.0], [5.0, 6.0, 7.0]]
    with mrcfile.mmap(path, mode="r") as m:
        parts, kept, _ = crop_particles(m.data, pos, 6)
    ref, _, _ = crop_particles(tomo, pos, 6)
    assert kept.all()
    np.testing.assert_array_equal(parts, ref)
    np.testing.assert_array_equal(parts[0], tomo[7 - 3 : 7 + 3, 11 - 3 : 11 + 3, 15 - 3 : 15 + 3])


# ---------------------------------------------------------------------- plan / stream / stack
import runpy  # noqa: E402
import tracemalloc  # noqa: E402
from types import SimpleNamespace  # noqa: E402

from stasnake.errors import InputError  # noqa: E402
from stasnake.io.dynamo_table import new_table, read_table, write_table  # noqa: E402
from stasnake.io.mrc import write_mrc  # noqa: E402
from stasnake.io.particle_export import read_particle_stack, write_particle_stack  # noqa: E402
from stasnake.sta.crop import iter_crop, plan_crop  # noqa: E402


def test_plan_and_stream_match_in_ram_crop():
    rng = np.random.default_rng(7)
    tomo = rng.standard_normal((30, 40, 50)).astype(np.float32)
    pos = rng.uniform(-2, 52, (40, 3)) * [1, 0.8, 0.6]
    for policy in ("drop", "pad"):
        plan = plan_crop(tomo.shape, pos, 8, policy)
        parts, kept, rem = crop_particles(tomo, pos, 8, policy)
        streamed = list(iter_crop(tomo, plan))
        assert plan.n_kept == len(streamed) == len(parts) and (plan.kept == kept).all()
        np.testing.assert_array_equal(np.stack(streamed), parts)
        np.testing.assert_array_equal(plan.remainder_xyz[plan.kept], rem)
        assert plan.inside[plan.kept].sum() <= plan.n_kept
    with pytest.raises(ValueError, match="plan made for shape"):
        next(iter_crop(tomo[:10], plan))


def test_nan_position_is_an_input_error():
    with pytest.raises(InputError, match=r"crop\.tbl: row 2: particle position"):
        plan_crop((10, 10, 10), [[5, 5, 5], [np.nan, 5, 5]], 4, source="crop.tbl")


def test_stack_streaming_memory_is_bounded(tmp_path):
    """300 boxes of 24^3 (16 MB) go through a 1 MB chunk: peak Python/numpy allocations stay near the chunk."""
    rng = np.random.default_rng(3)
    tomo_path = tmp_path / "tomo.mrc"
    write_mrc(tomo_path, rng.standard_normal((60, 200, 200)).astype(np.float32), 4.0)
    with mrcfile.mmap(tomo_path, mode="r") as m:
        tomo = m.data
        pos = rng.uniform(14, 186, (300, 3))
        pos[:, 2] = rng.uniform(14, 46, 300)
        plan = plan_crop(tomo.shape, pos, 24)
        assert plan.n_kept == 300
        stack_bytes = 300 * 24**3 * 4
        tracemalloc.start()
        write_particle_stack(
            tmp_path / "p.mrc", iter_crop(tomo, plan), plan.n_kept, 24, 4.0, chunk_bytes=2**20
        )
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        ref, _, _ = crop_particles(tomo, pos, 24)
    print(
        f"\npeak traced allocation {peak / 2**20:.2f} MiB for a {stack_bytes / 2**20:.1f} MiB stack (chunk 1 MiB)"
    )
    assert peak < 2 * 2**20 and stack_bytes > 7 * 2 * 2**20
    data, apix = read_particle_stack(tmp_path / "p.mrc")
    assert data.shape == (300, 24, 24, 24) and apix == pytest.approx(4.0)
    np.testing.assert_array_equal(data, ref)


def _run_script(script, smk, monkeypatch):
    """Run a rule script in-process, then undo what ``run_rule`` changes (stderr, logging, threads)."""
    import logging
    import sys

    import numba

    root = logging.getLogger()
    handlers, level, stderr = root.handlers[:], root.level, sys.stderr
    n_threads = numba.get_num_threads()
    monkeypatch.setenv("STASNAKE_THREADS", "1")
    try:
        runpy.run_path(str(script), init_globals={"snakemake": smk})
    finally:
        if sys.stderr is not stderr:
            sys.stderr.close()
            sys.stderr = stderr
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:], root.level = handlers, level
        numba.set_num_threads(n_threads)


def test_crop_script_streams_stack_and_logs_dropped_tags(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    tomo = rng.standard_normal((32, 48, 64)).astype(np.float32)
    write_mrc(tmp_path / "tomo.mrc", tomo, 5.4)
    table = new_table(4, x=[20.0, 2.0, 40.3, 33.0], y=[20.0, 20.0, 30.0, 24.0], z=[16.0, 16.0, 15.6, 16.0],
                      tag=[5, 6, 7, 8])  # fmt: skip
    table["dx"] = [0.2, 0.0, 0.0, -0.7]
    write_table(tmp_path / "crop.tbl", table)
    log_path = tmp_path / "crop.log"
    smk = SimpleNamespace(
        input=SimpleNamespace(tomogram=str(tmp_path / "tomo.mrc"), table=str(tmp_path / "crop.tbl")),
        output=SimpleNamespace(particles=str(tmp_path / "out" / "particles.mrc"),
                               table=str(tmp_path / "out" / "particles.tbl")),
        params=SimpleNamespace(box_size_px=10, edge_policy="drop"),
        log=[str(log_path)], threads=1, rule="crop_particles", wildcards={"ts": "TS_01"},
    )  # fmt: skip
    script = Path(__file__).resolve().parents[1] / "scripts" / "crop_particles.py"
    _run_script(script, smk, monkeypatch)
    stack, apix = read_particle_stack(smk.output.particles)
    out = read_table(smk.output.table)
    ref, kept, _ = crop_particles(
        tomo, table[["x", "y", "z"]].to_numpy() + table[["dx", "dy", "dz"]].to_numpy(), 10
    )
    assert out["tag"].tolist() == [5, 7, 8] and kept.tolist() == [True, False, True, True]
    np.testing.assert_array_equal(stack, ref)
    np.testing.assert_allclose(out["x"] + out["dx"], (table["x"] + table["dx"])[kept])
    assert "dropped, their box leaves the tomogram: tags 6" in log_path.read_text()


def test_a_box_larger_than_the_tomogram_names_the_key_and_file():
    from stasnake.sta.crop import check_box_fits

    check_box_fits(32, (40, 200, 200), "TS_01.mrc")
    with pytest.raises(InputError, match=r"averaging.box_size_px.*48 px.*TS_01.mrc.*\[200, 200, 40\]"):
        check_box_fits(48, (40, 200, 200), "TS_01.mrc")
