"""crop_particles: centring, edge policies, memory-mapped input."""

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
    np.testing.assert_array_equal(parts[0], tomo[7 - 3:7 + 3, 11 - 3:11 + 3, 15 - 3:15 + 3])
