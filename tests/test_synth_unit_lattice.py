import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from stasnake.geometry.euler import dynamo_euler_to_matrix, matrix_to_dynamo_euler
from stasnake.synth.lattice import icosphere, sphere_lattice
from stasnake.synth.unit import unit_map


def _fsc(a, b):
    n = a.shape[0]
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    f = np.fft.fftfreq(n)
    shell = np.round(np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2) * n).astype(int)
    out = []
    for s in range(1, n // 2):
        m = shell == s
        out.append((fa[m] * fb[m].conj()).sum().real / np.sqrt((abs(fa[m]) ** 2).sum() * (abs(fb[m]) ** 2).sum()))
    return np.array(out)


def test_unit_is_c6_and_chiral():
    m = unit_map(32, 5.4)
    assert m.shape == (32, 32, 32) and m.max() == pytest.approx(1.0)
    band = slice(7, 12)  # shells 8-12 of 32: 22-14 Å at 5.4 Å/px
    rot = lambda v, a: ndimage.rotate(v, a, axes=(1, 2), reshape=False, order=3)  # noqa: E731
    c6 = _fsc(m, rot(m, 60.0))
    assert c6[:8].min() > 0.85 and c6[band].mean() > 0.7
    assert _fsc(m, m)[band].mean() == pytest.approx(1.0)
    mirror = np.roll(m[:, :, ::-1], 1, axis=2)  # x -> -x about index 16
    best_mirror = max(_fsc(m, rot(mirror, a))[band].mean() for a in range(0, 60, 3))
    assert best_mirror < 0.6 < c6[band].mean()
    upside_down = np.roll(m[::-1], 1, axis=0)
    assert _fsc(m, upside_down)[band].mean() < 0.5


def test_icosphere_counts():
    for f in (1, 2, 5):
        pts = icosphere(f)
        assert len(pts) == 10 * f * f + 2
        np.testing.assert_allclose(np.linalg.norm(pts, axis=1), 1.0)


@pytest.mark.parametrize("radius, coverage", [(250.0, 0.7), (320.0, 0.62), (400.0, 0.78)])
def test_sphere_lattice_geometry(radius, coverage):
    pos, mats, r, freq = sphere_lattice(radius, 75.0, coverage, np.random.default_rng(3))
    np.testing.assert_allclose(np.linalg.norm(pos, axis=1), r, rtol=1e-9)
    assert len(pos) / len(icosphere(freq)) == pytest.approx(coverage, abs=0.01)
    d, _ = cKDTree(pos).query(pos, k=2)
    assert np.median(d[:, 1]) == pytest.approx(75.0, rel=0.1)
    np.testing.assert_allclose(np.einsum("nji,njk->nik", mats, mats), np.broadcast_to(np.eye(3), mats.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(mats), 1.0)
    normals = pos / np.linalg.norm(pos, axis=1, keepdims=True)
    angle = np.degrees(np.arccos(np.clip(np.sum(mats[:, :, 2] * normals, axis=1), -1, 1)))
    assert angle.max() < 1.0
    # Dynamo angles written to the truth table reproduce the matrices (also at tilt = 90)
    back = dynamo_euler_to_matrix(matrix_to_dynamo_euler(mats))
    np.testing.assert_allclose(back, mats, atol=1e-9)
