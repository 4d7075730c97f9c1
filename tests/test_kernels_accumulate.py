"""Wedge-weighted spectrum accumulation and trilinear rotation: numba CPU kernels vs numpy and the CUDA twins.

The CUDA kernels run under numba's simulator without a GPU (tests/conftest.py sets
NUMBA_ENABLE_CUDASIM=1), hence the tiny sizes.
"""

import numpy as np
import pytest

from stasnake.kernels.accumulate import (
    accumulate_spectrum,
    transfer_weight,
    wedge_parameters,
    wedge_weights,
)
from stasnake.kernels.backproject_cuda import cuda_available
from stasnake.kernels.interp import affine_trilinear
from stasnake.sta.average import accumulate_particles
from stasnake.sta.wedge import wedge_mask
from stasnake.synth.particles import random_rotations
from tests.test_kernels_cuda import assert_cuda_call_fails_clearly

needs_cuda = pytest.mark.skipif(not cuda_available(), reason="no CUDA device and no simulator")
RANGES = [(-60.0, 60.0), (-45.0, 45.0), (-30.0, 70.0), (-60.0, 90.0), (-90.0, 50.0), (-90.0, 90.0), (0.0, 0.0)]


@pytest.mark.parametrize("d", [16, 17])
def test_wedge_kernel_matches_wedge_mask(d):
    """The trig-free on-the-fly test decides every frequency like stasnake.sta.wedge.wedge_mask."""
    rng = np.random.default_rng(0)
    poses = np.concatenate([np.eye(3)[None], random_rotations(12, rng)])
    wedges = wedge_parameters(RANGES)
    for rr, wp in zip(RANGES, wedges, strict=True):
        for rot in poses:
            np.testing.assert_array_equal(wedge_weights(rot, wp, d), wedge_mask(d, rr, rot))


def test_accumulate_crops_and_masks():
    rng = np.random.default_rng(1)
    n, d = 12, 8
    spec = (rng.standard_normal((n, n, n // 2 + 1)) + 1j * rng.standard_normal((n, n, n // 2 + 1))).astype(np.complex64)
    rot = random_rotations(1, rng)[0]
    s = np.zeros((d, d, d // 2 + 1), np.complex128)
    w = np.zeros(s.shape)
    accumulate_spectrum(spec, rot, wedge_parameters([(-50, 60)])[0], 0.5, s, w)
    mask = wedge_mask(d, (-50, 60), rot)
    f = (np.fft.fftfreq(d) * d).astype(int) % n
    np.testing.assert_array_equal(w, mask)
    np.testing.assert_allclose(s, 0.5 * mask * spec[f][:, f][:, :, : d // 2 + 1], rtol=1e-6)


def _transfer(rng, n_tilts=9):
    tilts = np.radians(np.linspace(-60.0, 60.0, n_tilts))
    return tilts, rng.uniform(-0.2, 1.0, (n_tilts, 30)), 2.0


def test_accumulate_with_transfer_adds_h_times_spectrum_and_h_squared():
    """The compiled kernel uses the plain-Python transfer_weight: S += H P, W += H^2 (H may be negative)."""
    rng = np.random.default_rng(6)
    n = 8
    spec = (rng.standard_normal((n, n, n // 2 + 1)) + 1j * rng.standard_normal((n, n, n // 2 + 1))).astype(np.complex64)
    rot = random_rotations(1, rng)[0]
    wp = wedge_parameters([(-60, 60)])[0]
    tilts, table, samples = _transfer(rng)
    s = np.zeros((n, n, n // 2 + 1), np.complex128)
    w = np.zeros(s.shape)
    accumulate_spectrum(spec, rot, wp, 1.0, s, w, tilts, table, samples)
    f = np.fft.fftfreq(n) * n
    h = np.array([[[transfer_weight(rot, float(x), float(y), float(z), wp, tilts, table, samples)
                    for x in range(n // 2 + 1)] for y in f] for z in f])  # fmt: skip
    assert (h < 0).any() and (h > 0).any() and (h == 0).any()  # sign changes and the wedge are exercised
    np.testing.assert_allclose(w, h**2, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(s, h * spec, rtol=1e-5, atol=1e-6)
    # the nearest tilt's row, linear in |k|: a table constant along |k| returns that tilt's value
    flat = np.repeat(np.arange(9.0)[:, None], 30, axis=1)
    k = np.array([1.0, 0.0, 1.0])  # tilt 45 deg about y -> nearest of linspace(-60, 60, 9) is 45 (index 7)
    assert transfer_weight(np.eye(3), *k, wedge_parameters([(-60, 60)])[0], tilts, flat, samples) == 7.0
    assert transfer_weight(np.eye(3), 1.0, 0.0, -1.0, wp, tilts, flat, samples) == 1.0  # -45 deg -> index 1
    assert transfer_weight(np.eye(3), 0.0, 2.0, 0.0, wp, tilts, flat, samples) == 4.0  # tilt axis: mean of tilts


@needs_cuda
def test_cuda_accumulate_with_transfer_matches_cpu():
    from stasnake.kernels.accumulate_cuda import CudaSpectrumSums

    rng = np.random.default_rng(7)
    n, d = 8, 6
    s = np.zeros((d, d, d // 2 + 1), np.complex128)
    w = np.zeros(s.shape)
    gpu = CudaSpectrumSums(d)
    for rot in random_rotations(2, rng):
        spec = (rng.standard_normal((n, n, n // 2 + 1)) + 1j).astype(np.complex64)
        transfer = _transfer(rng)
        accumulate_spectrum(spec, rot, wedge_parameters([(-60, 60)])[0], 0.7, s, w, *transfer)
        gpu.add(spec, rot, wedge_parameters([(-60, 60)])[0], 0.7, *transfer)
    gs, gw = gpu.to_host()
    np.testing.assert_allclose(gw, w, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gs, s, rtol=1e-6, atol=1e-6)


@needs_cuda
def test_cuda_accumulate_matches_cpu():
    from stasnake.kernels.accumulate_cuda import CudaSpectrumSums

    rng = np.random.default_rng(2)
    n, d = 8, 6
    rots = random_rotations(2, rng)
    wedges = wedge_parameters([(-60, 60), (-40, 90)])
    s = np.zeros((d, d, d // 2 + 1), np.complex128)
    w = np.zeros(s.shape)
    gpu = CudaSpectrumSums(d)
    for rot, wp in zip(rots, wedges, strict=True):
        shape = (n, n, n // 2 + 1)
        spec = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
        accumulate_spectrum(spec, rot, wp, 0.4, s, w)
        gpu.add(spec, rot, wp, 0.4)
    gs, gw = gpu.to_host()
    np.testing.assert_array_equal(gw, w)
    np.testing.assert_allclose(gs, s, rtol=1e-6, atol=1e-6)


@needs_cuda
@pytest.mark.parametrize("cval", [0.0, 0.5])
def test_cuda_trilinear_matches_cpu(cval):
    from stasnake.kernels.interp_cuda import affine_trilinear_cuda

    rng = np.random.default_rng(3)
    vol = rng.standard_normal((6, 7, 8)).astype(np.float32)
    m = random_rotations(1, rng)[0] * 1.1  # parts of the output sample outside the input
    offset = np.array([3.3, 2.7, 3.1])
    centre = np.array([4.0, 3.0, 3.0])
    cpu = affine_trilinear(vol, m, offset, (7, 6, 8), centre, cval)
    gpu = affine_trilinear_cuda(vol, m, offset, (7, 6, 8), centre, cval)
    assert gpu.shape == cpu.shape == (7, 6, 8) and gpu.dtype == np.float32
    np.testing.assert_allclose(gpu, cpu, rtol=1e-5, atol=1e-5)


@needs_cuda
def test_rotate_volume_on_cuda():
    from stasnake.sta.rotate import rotate_volume

    rng = np.random.default_rng(5)
    vol = rng.standard_normal((5, 5, 5)).astype(np.float32)
    rot, shift = random_rotations(1, rng)[0], np.array([0.3, -0.6, 0.2])
    cpu = rotate_volume(vol, rot, shift)
    np.testing.assert_allclose(rotate_volume(vol, rot, shift, device="cuda"), cpu, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="order=1"):
        rotate_volume(vol, rot, shift, order=3, device="cuda")
    with pytest.raises(ValueError, match="device"):
        rotate_volume(vol, rot, shift, device="gpu")


@needs_cuda
@pytest.mark.parametrize("order", [1, 3])
def test_cuda_averaging_matches_cpu(order):
    """Order 3: the device rotates trilinearly only, so cubic B-splines run on the host."""
    rng = np.random.default_rng(4)
    parts = rng.standard_normal((2, 6, 6, 6)).astype(np.float32)
    mats = random_rotations(2, rng)
    shifts = rng.uniform(-1, 1, (2, 3))
    ranges = [(-60, 60), (-90, 90)]
    for dim in (None, 4):
        cpu = accumulate_particles(parts, mats, shifts, ranges, dim=dim, interpolation_order=order)
        gpu = accumulate_particles(parts, mats, shifts, ranges, dim=dim, device="cuda", interpolation_order=order)
        np.testing.assert_array_equal(gpu.weight, cpu.weight)
        np.testing.assert_allclose(gpu.spectrum, cpu.spectrum, rtol=1e-5, atol=1e-5 * np.abs(cpu.spectrum).max())
        assert gpu.count == cpu.count == 2


def test_cuda_averaging_without_device_raises_clear_error():
    """Without a GPU and without the simulator, device='cuda' is a RuntimeError, not a crash."""
    assert_cuda_call_fails_clearly(
        "import numpy as np\n"
        "from stasnake.sta.average import average_particles\n"
        "try:\n"
        "    average_particles(np.zeros((1, 4, 4, 4), np.float32), np.eye(3)[None], np.zeros((1, 3)), device='cuda')\n"
        "except RuntimeError as e:\n"
        "    print('RuntimeError:', e)\n"
    )
