"""rotate_volume: conventions, inverse, agreement with scipy."""

import numpy as np
import pytest
import scipy.ndimage

from stasnake.geometry.euler import dynamo_euler_to_matrix
from stasnake.sta.rotate import rotate_volume, rotation_about_z


def asymmetric_object(n=32, sigma=1.8):
    """Smooth asymmetric test object: blobs along +x (strong), +y (medium), +z (weak)."""
    c = n // 2
    z, y, x = np.mgrid[0:n, 0:n, 0:n] - c
    vol = np.zeros((n, n, n))
    for (bx, by, bz), a in [((7, 0, 0), 1.0), ((0, 5, 0), 0.7), ((0, 0, 4), 0.4), ((-3, -3, 2), 0.55)]:
        vol += a * np.exp(-((x - bx) ** 2 + (y - by) ** 2 + (z - bz) ** 2) / (2 * sigma**2))
    return vol.astype(np.float32)


def _peak_xyz(vol):
    k, j, i = np.unravel_index(np.argmax(vol), vol.shape)
    n = vol.shape[0] // 2
    return (i - n, j - n, k - n)


def test_plus_90_about_z_moves_x_to_y():
    vol = asymmetric_object()
    # rotate the object actively by Rz(+90): out(p) = vol(R^T p)
    rotated = rotate_volume(vol, rotation_about_z(90.0).T)
    assert _peak_xyz(vol) == (7, 0, 0)
    assert _peak_xyz(rotated) == (0, 7, 0)


def test_pose_brings_particle_into_reference_frame():
    vol = asymmetric_object()
    R = dynamo_euler_to_matrix([30.0, 50.0, -70.0])
    shift = np.array([1.5, -2.0, 0.75])
    # particle in the tomogram: particle(R p + c + shift) = ref(p)  =>  particle(q) = ref(R^T (q - c - shift))
    particle = rotate_volume(vol, R.T, shift_xyz=-(R.T @ shift))
    back = rotate_volume(particle, R, shift_xyz=shift)
    inner = vol > 0.05
    assert np.corrcoef(back[inner], vol[inner])[0, 1] > 0.99


def test_rotate_and_back_recovers_object():
    vol = asymmetric_object()
    R = dynamo_euler_to_matrix([110.0, 35.0, 20.0])
    back = rotate_volume(rotate_volume(vol, R), R.T)
    assert np.corrcoef(back.ravel(), vol.ravel())[0, 1] > 0.99
    back3 = rotate_volume(rotate_volume(vol, R, order=3), R.T, order=3)
    assert np.corrcoef(back3.ravel(), vol.ravel())[0, 1] > 0.999


@pytest.mark.parametrize("cval", [0.0, 1.5])
@pytest.mark.parametrize("order", [1, 3])
def test_agrees_with_scipy_affine_transform(order, cval):
    """Order 1 and 3 run numba kernels (trilinear; cubic B-spline on scipy's prefilter)."""
    rng = np.random.default_rng(3)
    vol = rng.standard_normal((20, 22, 24)).astype(np.float32)
    R = dynamo_euler_to_matrix([20.0, 70.0, 160.0])
    shift = np.array([0.3, -1.2, 2.1])
    c = np.array([24 // 2, 22 // 2, 20 // 2], dtype=float)  # (x, y, z)
    # scipy works in (z, y, x): in_zyx = M out_zyx + offset
    m_zyx = R[::-1, ::-1]
    offset_xyz = c + shift - R @ c
    ref = scipy.ndimage.affine_transform(vol, m_zyx, offset=offset_xyz[::-1], order=order,
                                         mode="grid-constant", cval=cval)
    ours = rotate_volume(vol, R, shift_xyz=shift, order=order, cval=cval)
    np.testing.assert_allclose(ours, ref, atol=2e-4)


def test_identity_and_integer_shift():
    rng = np.random.default_rng(4)
    vol = rng.standard_normal((12, 12, 12)).astype(np.float32)
    np.testing.assert_allclose(rotate_volume(vol, np.eye(3)), vol, atol=1e-6)
    shifted = rotate_volume(vol, np.eye(3), shift_xyz=(2, 0, 0))
    np.testing.assert_allclose(shifted[:, :, :-2], vol[:, :, 2:], atol=1e-6)
    assert np.all(shifted[:, :, -1] == 0)
