"""Weighted back-projection: geometry, slabs, memmap output, iradon, Fourier binning."""

import numpy as np
import pytest

from stasnake.io.mrc import read_mrc
from stasnake.tilt.reconstruct import (
    bin_volume_fourier,
    reconstruct_wbp,
    reconstruct_wbp_to_mrc,
    tilt_weights,
)

ANGLES = np.arange(-60.0, 60.1, 3.0)


def _project_points(points_xyz, angles_deg, ny, nu, amplitude=1.0):
    """Analytic projections of point sources with the documented geometry (linear splat)."""
    stack = np.zeros((len(angles_deg), ny, nu), dtype=np.float32)
    for i, t in enumerate(np.radians(angles_deg)):
        for x, y, z in points_xyz:
            u = x * np.cos(t) + z * np.sin(t) + nu // 2
            i0 = int(np.floor(u))
            f = u - i0
            stack[i, y + ny // 2, i0] += amplitude * (1 - f)
            stack[i, y + ny // 2, i0 + 1] += amplitude * f
    return stack


@pytest.mark.parametrize("point", [(7, -3, 5), (-12, 4, 9), (3, 0, -10), (0, 6, 0)])
def test_point_source_lands_on_its_voxel(point):
    nz, ny, nu = 32, 16, 64
    stack = _project_points([point], ANGLES, ny, nu)
    vol = reconstruct_wbp(stack, ANGLES, nz, slab_size=5)
    assert vol.shape == (nz, ny, nu)
    x, y, z = point
    expected = (z + nz // 2, y + ny // 2, x + nu // 2)
    assert np.unravel_index(np.argmax(vol), vol.shape) == expected
    assert vol[expected] > 0  # positive source -> positive voxel
    assert vol[expected] > 3 * abs(vol.min())  # ramp side lobes are negative, much weaker


def test_hand_negative_tilts_flip_z():
    """Reversing the sign of the tilts mirrors Z (fixes the hand)."""
    nz, ny, nu = 32, 8, 64
    stack = _project_points([(6, 0, 8)], ANGLES, ny, nu)
    vol = reconstruct_wbp(stack, -ANGLES, nz)
    assert np.unravel_index(np.argmax(vol), vol.shape) == (-8 + nz // 2, ny // 2, 6 + nu // 2)


def test_slab_size_and_memmap_do_not_change_result(tmp_path):
    rng = np.random.default_rng(1)
    stack = rng.standard_normal((len(ANGLES), 20, 48)).astype(np.float32)
    ref = reconstruct_wbp(stack, ANGLES, 24, slab_size=64)
    for s in (1, 7, 20):
        np.testing.assert_allclose(reconstruct_wbp(stack, ANGLES, 24, slab_size=s), ref, rtol=1e-5, atol=1e-6)
    out = np.zeros((24, 20, 48), np.float32)
    assert reconstruct_wbp(stack, ANGLES, 24, out=out, filter="ramp") is out
    path = tmp_path / "tomo.mrc"
    reconstruct_wbp_to_mrc(stack, ANGLES, 24, path, pixel_size_angstrom=2.5, slab_size=6)
    data, apix = read_mrc(path)
    assert apix == pytest.approx(2.5)
    np.testing.assert_allclose(data, ref, rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    stack = np.zeros((3, 4, 8), np.float32)
    with pytest.raises(NotImplementedError):
        reconstruct_wbp(stack, [0, 1, 2], 4, device="cuda")
    with pytest.raises(ValueError, match="tilt angles"):
        reconstruct_wbp(stack, [0, 1], 4)
    with pytest.raises(ValueError, match="filter"):
        reconstruct_wbp(stack, [0, 1, 2], 4, filter="shepp")
    with pytest.raises(ValueError, match="shape"):
        reconstruct_wbp(stack, [0, 1, 2], 4, out=np.zeros((4, 4, 4), np.float32))


def test_tilt_weights_even_spacing():
    np.testing.assert_allclose(tilt_weights([0.0, 3.0, -3.0]), np.radians(3.0))


@pytest.mark.parametrize("filter_name", ["ramp", "hamming"])
def test_matches_skimage_iradon_on_one_slice(filter_name):
    from skimage.data import shepp_logan_phantom
    from skimage.transform import iradon, radon, rescale

    n = 65  # odd: flipping the rows keeps the centre (n // 2) fixed
    phantom = rescale(shepp_logan_phantom(), n / 400.0, anti_aliasing=False)[:n, :n]
    theta = np.arange(0.0, 180.0, 2.0)
    # skimage: detector t = x cos(theta) + y_up sin(theta), x = col - n//2, y_up = n//2 - row.
    # Ours: U = X cos t + Z sin t. So slice[iz, ix] = phantom[n - 1 - iz, ix] and t = theta.
    sino = radon(phantom, theta=theta, circle=True)  # (n_det, n_angles)
    ref = iradon(sino, theta=theta, circle=True, filter_name=filter_name)
    stack = sino.T[:, None, :].astype(np.float32)  # (n_angles, 1, nu)
    vol = reconstruct_wbp(stack, theta, n, filter=filter_name)
    ours = vol[::-1, 0, :]
    yy, xx = np.mgrid[0:n, 0:n] - n // 2
    inside = xx**2 + yy**2 < (n // 2 - 2) ** 2
    r = np.corrcoef(ours[inside], ref[inside])[0, 1]
    assert r > 0.95
    # same scale (both approximate continuous FBP)
    assert np.std(ours[inside]) == pytest.approx(np.std(ref[inside]), rel=0.15)


def test_bin_volume_fourier_keeps_mean_and_low_frequencies():
    rng = np.random.default_rng(2)
    z, y, x = np.mgrid[0:32, 0:40, 0:48].astype(float)
    vol = (3.0 + np.sin(2 * np.pi * x / 48 * 2) + 0.5 * np.cos(2 * np.pi * z / 32 * 3)
           + 0.3 * np.sin(2 * np.pi * y / 40)).astype(np.float32)
    noisy = vol + 0.01 * rng.standard_normal(vol.shape).astype(np.float32)
    b = bin_volume_fourier(noisy, 2)
    assert b.shape == (16, 20, 24)
    assert b.mean() == pytest.approx(noisy.mean(), rel=1e-5)
    zb, yb, xb = np.mgrid[0:16, 0:20, 0:24].astype(float) * 2
    expect = 3.0 + np.sin(2 * np.pi * xb / 48 * 2) + 0.5 * np.cos(2 * np.pi * zb / 32 * 3) + 0.3 * np.sin(2 * np.pi * yb / 40)
    np.testing.assert_allclose(b, expect, atol=0.02)
    assert bin_volume_fourier(vol, 1).shape == vol.shape
    with pytest.raises(ValueError):
        bin_volume_fourier(vol, 0)
