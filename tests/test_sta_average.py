"""average_particles: known-pose averaging and Cn symmetrisation."""

import logging

import numpy as np

from stasnake.geometry.euler import dynamo_euler_to_matrix
from stasnake.sta.average import average_particles, symmetrize_cn
from stasnake.sta.rotate import rotate_volume, rotation_about_z


def asymmetric_object(n=32, sigma=1.8):
    """Smooth asymmetric test object (same as in test_sta_rotate)."""
    c = n // 2
    z, y, x = np.mgrid[0:n, 0:n, 0:n] - c
    vol = np.zeros((n, n, n))
    for (bx, by, bz), a in [((7, 0, 0), 1.0), ((0, 5, 0), 0.7), ((0, 0, 4), 0.4), ((-3, -3, 2), 0.55)]:
        vol += a * np.exp(-((x - bx) ** 2 + (y - by) ** 2 + (z - bz) ** 2) / (2 * sigma**2))
    return vol.astype(np.float32)


def _make_particles(ref, n, rng, noise=0.0):
    eulers = rng.uniform([-180, 0, -180], [180, 180, 180], size=(n, 3))
    mats = dynamo_euler_to_matrix(eulers)
    shifts = rng.uniform(-2, 2, size=(n, 3))
    parts = []
    for R, s in zip(mats, shifts, strict=True):
        p = rotate_volume(ref, R.T, shift_xyz=-(R.T @ s), order=3)
        parts.append(p + noise * rng.standard_normal(p.shape).astype(np.float32))
    return np.stack(parts), mats, shifts


def _cc(a, b, mask):
    return np.corrcoef(a[mask], b[mask])[0, 1]


def test_noise_free_copies_average_to_the_object(caplog):
    rng = np.random.default_rng(7)
    ref = asymmetric_object(24, sigma=2.0)
    parts, mats, shifts = _make_particles(ref, 12, rng)
    with caplog.at_level(logging.INFO, logger="stasnake.sta.average"):
        avg = average_particles(parts, mats, shifts, log_every=5)
    assert avg.shape == ref.shape and avg.dtype == np.float32
    z, y, x = np.mgrid[0:24, 0:24, 0:24] - 12
    mask = x**2 + y**2 + z**2 < 10**2
    assert _cc(avg, ref, mask) > 0.99
    assert sum("averaged" in r.message for r in caplog.records) == 2


def test_more_noisy_copies_improve_the_average():
    rng = np.random.default_rng(8)
    ref = asymmetric_object(24, sigma=2.0)
    z, y, x = np.mgrid[0:24, 0:24, 0:24] - 12
    mask = x**2 + y**2 + z**2 < 10**2
    parts, mats, shifts = _make_particles(ref, 40, rng, noise=1.0)
    cc_few = _cc(average_particles(parts[:4], mats[:4], shifts[:4]), ref, mask)
    cc_many = _cc(average_particles(parts, mats, shifts), ref, mask)
    assert cc_many > cc_few + 0.1
    assert cc_many > 0.8


def test_c6_symmetrisation_is_invariant_under_60_degrees():
    ref = asymmetric_object(32, sigma=2.0)
    sym = average_particles(ref[None], np.eye(3)[None], np.zeros((1, 3)), symmetry=6)
    z, y, x = np.mgrid[0:32, 0:32, 0:32] - 16
    mask = x**2 + y**2 < 12**2
    rotated = rotate_volume(sym, rotation_about_z(60.0))
    assert _cc(rotated, sym, mask) > 0.99
    # the unsymmetrised object is not invariant
    assert _cc(rotate_volume(ref, rotation_about_z(60.0)), ref, mask) < 0.5
    np.testing.assert_allclose(symmetrize_cn(ref, 1), ref)
