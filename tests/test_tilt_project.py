import numpy as np
import pytest
from scipy import ndimage

from stasnake.tilt.project import height_bin_centres, project_volume


@pytest.mark.parametrize("tilt", [0.0, 27.0, -41.0, 60.0, -60.0])
def test_single_voxel_lands_at_analytic_position_and_height_bin(tilt):
    nz, ny, nx = 24, 20, 48
    X, Y, Z = 7, -3, 5
    vol = np.zeros((nz, ny, nx), np.float32)
    vol[Z + nz // 2, Y + ny // 2, X + nx // 2] = 1.0
    t = np.radians(tilt)
    u = X * np.cos(t) + Z * np.sin(t)
    h = -X * np.sin(t) + Z * np.cos(t)
    p = project_volume(vol, [tilt])
    assert p.shape == (1, ny, nx)
    assert p.sum() == pytest.approx(1.0)
    row = p[0, Y + ny // 2]
    assert row.sum() == pytest.approx(1.0)
    assert np.sum(row * np.arange(nx)) - nx // 2 == pytest.approx(u, abs=1e-4)
    hr = (-30.0, 30.0)
    pb = project_volume(vol, [tilt], n_height_bins=6, height_range=hr)
    assert pb.shape == (1, 6, ny, nx)
    k = int(np.argmax(pb[0].sum(axis=(1, 2))))
    assert abs(height_bin_centres(6, hr)[k] - h) <= 5.0
    np.testing.assert_allclose(pb[0].sum(axis=0), p[0], atol=1e-6)


def test_mass_conservation():
    rng = np.random.default_rng(1)
    vol = np.zeros((16, 24, 32), np.float32)
    vol[4:12, 3:20, 8:24] = rng.random((8, 17, 16))
    p = project_volume(vol, np.arange(-60, 61, 15), n_height_bins=3)
    np.testing.assert_allclose(p.sum(axis=(1, 2, 3)), vol.sum(), rtol=1e-5)


def _reference(vol, tilt):
    """Rotate about y with scipy and sum along the beam: P(u, y) = sum_h V(X(u, h), y, Z(u, h))."""
    nz, ny, nx = vol.shape
    t = np.radians(tilt)
    hs = np.arange(-nx, nx + 1)
    u = np.arange(nx) - nx // 2
    uu, hh = np.meshgrid(u, hs, indexing="ij")
    x = uu * np.cos(t) - hh * np.sin(t) + nx // 2
    z = uu * np.sin(t) + hh * np.cos(t) + nz // 2
    out = np.zeros((ny, nx))
    for iy in range(ny):
        coords = np.stack([z.ravel(), np.full(z.size, iy), x.ravel()])
        out[iy] = ndimage.map_coordinates(vol, coords, order=1, cval=0.0).reshape(uu.shape).sum(axis=1)
    return out


def test_matches_scipy_reference_on_a_smooth_volume():
    nz, ny, nx = 20, 12, 40
    z, y, x = np.meshgrid(*(np.arange(n) - n // 2 for n in (nz, ny, nx)), indexing="ij")
    vol = np.zeros((nz, ny, nx))
    for cx, cy, cz, s in ((5, 1, 3, 2.0), (-8, -2, -4, 2.5), (10, 3, -2, 1.5)):
        vol += np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * s * s))
    for tilt in (-50.0, -12.0, 0.0, 33.0):
        ref = _reference(vol, tilt)
        got = project_volume(vol, [tilt])[0]
        assert np.abs(got - ref).max() < 0.03 * ref.max()
