"""Coordinate helpers: box centres, 1-based tables, RELION 5 centred coordinates."""

import numpy as np

from stasnake.geometry.coordinates import (
    array_index_to_table,
    box_center,
    from_relion5_centered_angstrom,
    table_to_array_index,
    to_relion5_centered_angstrom,
    tomogram_center,
)


def test_box_center_is_fft_centre():
    for n in range(1, 12):
        assert box_center(n) == n // 2
        # the FFT zero frequency of fftshift sits at the same index
        assert np.argmin(np.abs(np.fft.fftshift(np.fft.fftfreq(n)))) == box_center(n)
    np.testing.assert_array_equal(box_center([4, 5, 64]), [2, 2, 32])


def test_table_array_round_trip_and_voxel_lookup():
    vol = np.zeros((5, 6, 7))
    vol[1, 2, 3] = 1.0  # [iz, iy, ix]
    xyz = np.array([4.0, 3.0, 2.0])  # table (x, y, z), 1-based
    ix, iy, iz = table_to_array_index(xyz).astype(int)
    assert vol[iz, iy, ix] == 1.0
    np.testing.assert_allclose(array_index_to_table(table_to_array_index(xyz)), xyz)


def test_tomogram_center_xyz_order():
    np.testing.assert_array_equal(tomogram_center((100, 200, 300)), [150, 100, 50])
    np.testing.assert_array_equal(tomogram_center((5, 7, 9)), [4, 3, 2])


def test_relion5_centre_maps_to_zero_and_round_trips():
    size = (928, 928, 464)
    apix = 1.35
    centre_1based = tomogram_center(size[::-1]) + 1
    np.testing.assert_allclose(to_relion5_centered_angstrom(centre_1based, size, apix), 0.0)
    rng = np.random.default_rng(0)
    xyz = rng.uniform(1, 900, size=(100, 3))
    c = to_relion5_centered_angstrom(xyz, size, apix)
    np.testing.assert_allclose(c, (xyz - 1 - np.array(size) / 2) * apix)
    np.testing.assert_allclose(from_relion5_centered_angstrom(c, size, apix), xyz, atol=1e-9)
    # odd size: RELION's float centre size/2 (ParticleSet uses w0/2.0)
    np.testing.assert_allclose(to_relion5_centered_angstrom([3.5, 3.5, 3.5], (5, 5, 5), 1.0), 0.0)
