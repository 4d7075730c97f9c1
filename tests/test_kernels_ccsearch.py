"""Kernels of the CC search (stasnake.kernels.ccsearch): pieces against numpy/scipy, CUDA twin against CPU.

The CUDA tests run numba's CUDA simulator when there is no GPU (tests/conftest.py
sets NUMBA_ENABLE_CUDASIM=1 before numba is imported), on tiny sizes.
"""

import numpy as np
import pytest
from scipy import ndimage

from stasnake.kernels import ccsearch
from stasnake.kernels.backproject_cuda import cuda_available
from stasnake.sta import align
from stasnake.synth.particles import random_rotations, simulate_particles
from stasnake.synth.unit import unit_map
from tests.test_kernels_cuda import assert_cuda_call_fails_clearly

needs_cuda = pytest.mark.skipif(not cuda_available(), reason="no CUDA device and no simulator")


def _tiny_problem(seed=0, n=16, low=4.0, limits=(2.0, 2.0, 1.5), n_random=2):
    """Two particles of a 16 px unit, the reference arrays, a window and candidates (true + random poses)."""
    rng = np.random.default_rng(seed)
    unit = unit_map(n, 5.4 * 32 / n)
    rots = random_rotations(2, rng)
    shifts = rng.uniform(-1, 1, (2, 3))
    parts = simulate_particles(unit, rots, shifts, rng, (-50, 50), snr=1.0)
    params = align.SearchParams(0, 10, 0, 10, low=low, shift_limits_xyz=limits)
    prep = align.prepare_reference(unit, params)
    window, _ = align._window(n, n, prep.arrays.k_max, np.asarray(limits, float))
    spectra, *weights = align._particle_spectra(parts, range(2), prep, np.tile([-50, 50], (2, 1)))
    particles = align._particle_arrays(spectra, weights, prep, np.zeros((2, 3)))
    cand = np.concatenate([rots, random_rotations(n_random, rng)])
    part = np.arange(len(cand)) % 2
    return prep, window, particles, cand, part


def _direct_cc_map(prep, window, particles, rot, p):
    """Normalised CC on every window point by direct sums in numpy (trilinear sampling by scipy)."""
    ref = prep.arrays
    k = ref.k_xyz.astype(np.float64)
    pos = 2.0 * k @ rot + ref.centre  # 2 R^T k, (x, y, z)
    coords = pos[:, ::-1].T  # (z, y, x) for map_coordinates
    t = ndimage.map_coordinates(ref.cube.real, coords, order=1) + 1j * ndimage.map_coordinates(
        ref.cube.imag, coords, order=1
    )
    q = particles.q_re[p] + 1j * particles.q_im[p]
    t_norm = np.sqrt(np.sum(particles.m2w[p] * np.abs(t) ** 2))
    wz, wy, wx = window.valid.shape
    sx, sy, sz = ((np.arange(w) - (w - 1) // 2) * window.step_px for w in (wx, wy, wz))
    grid = np.stack(np.meshgrid(sz, sy, sx, indexing="ij"), -1)[..., ::-1].reshape(
        -1, 3
    )  # (x, y, z)
    cc = np.real(np.exp(2j * np.pi * grid @ k.T / window.box) @ (np.conj(t) * q))
    return cc.reshape(wz, wy, wx) / (t_norm * particles.p_norm[p]), grid.reshape(wz, wy, wx, 3)


def test_sample_trilinear_matches_scipy():
    rng = np.random.default_rng(1)
    side = 9
    cube = (rng.normal(size=(side,) * 3) + 1j * rng.normal(size=(side,) * 3)).astype(np.complex64)
    pts = rng.uniform(0, side - 1.001, (50, 3)).astype(np.float32)  # (x, y, z)
    got = np.array(
        [
            ccsearch._sample(cube.reshape(-1), np.uint64(side), np.uint64(side * side), *p)
            for p in pts
        ]
    )
    coords = pts[:, ::-1].T.astype(np.float64)
    want = ndimage.map_coordinates(cube.real, coords, order=1) + 1j * ndimage.map_coordinates(
        cube.imag, coords, order=1
    )
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_newton_step_is_exact_on_a_gaussian_peak():
    """One log-Newton step from anywhere lands on the top of a Gaussian; a saddle falls back per axis."""
    centre = np.array([0.3, -0.2, 0.4])
    m = np.array([[0.5, 0.1, 0.0], [0.1, 0.3, 0.05], [0.0, 0.05, 0.4]])
    d = -centre  # evaluate at s = 0
    f = 2.0 * np.exp(-d @ m @ d)
    g = -2 * (m @ d) * f
    h = (np.outer(2 * m @ d, 2 * m @ d) - 2 * m) * f
    step = ccsearch.newton_step(f, *g, h[0, 0], h[0, 1], h[0, 2], h[1, 1], h[1, 2], h[2, 2], 1.0)
    np.testing.assert_allclose(step, centre, atol=1e-12)
    clamped = ccsearch.newton_step(
        f, *g, h[0, 0], h[0, 1], h[0, 2], h[1, 1], h[1, 2], h[2, 2], 0.25
    )
    np.testing.assert_allclose(clamped, np.clip(centre, -0.25, 0.25), atol=1e-12)
    saddle = ccsearch.newton_step(-1.0, 1.0, 0.0, 0.0, -2.0, 0.0, 0.0, 3.0, 0.0, -1.0, 5.0)
    np.testing.assert_allclose(saddle, (0.5, 0.0, 0.0))


def test_clip_to_ellipsoid():
    inside = ccsearch.clip_to_ellipsoid(0, 0, 0, 0.5, 0.5, 0.0, 1.0, 1.0, 1.0)
    assert inside == (0.5, 0.5, 0.0)
    x, y, z = ccsearch.clip_to_ellipsoid(1.0, 0.0, 0.0, 3.0, 0.0, 0.0, 1 / 4, 1 / 9, 1.0)
    np.testing.assert_allclose((x, y, z), (2.0, 0.0, 0.0))
    x, y, z = ccsearch.clip_to_ellipsoid(0.0, 0.0, 0.0, 0.0, 5.0, 1.0, 0.0, 1 / 4, 1e30)
    assert abs(z) < 1e-12 and 0 < y <= 2.0  # a zero limit on z forbids any z shift


def test_window_dft_and_peak_match_direct_sums():
    """Grid peak (refine=False) equals the maximum of the directly summed CC map; Newton finds a stationary top."""
    prep, window, particles, cand, part = _tiny_problem()
    cc, off = ccsearch.score_candidates(prep.arrays, window, particles, cand, part, refine=False)
    cc_ref, off_ref = ccsearch.score_candidates(
        prep.arrays, window, particles, cand, part, refine=True
    )
    for c in range(len(cand)):
        cmap, grid = _direct_cc_map(prep, window, particles, cand[c], part[c])
        cmap = np.where(window.valid, cmap, -np.inf)
        best = np.unravel_index(np.argmax(cmap), cmap.shape)
        np.testing.assert_allclose(cc[c], cmap[best], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(off[c], grid[best], atol=1e-6)
        assert cc_ref[c] >= cc[c] - 1e-6
        assert np.all(np.abs(off_ref[c] - off[c]) <= window.step_px + 1e-6)
    # at a true pose the refined shift is the maximum of the continuous CC: a 0.05 px probe is lower
    w1, _ = align._window(window.box, window.box, prep.arrays.k_max, np.zeros(3))
    parts = particles
    for c in range(2):
        centred = ccsearch.ParticleArrays(*(a.copy() for a in parts))
        k = prep.k_xyz.astype(np.float64)
        for probe in (
            np.zeros(3),
            np.array([0.05, 0, 0]),
            np.array([0, -0.05, 0]),
            np.array([0, 0, 0.05]),
        ):
            ph = np.exp(2j * np.pi * (k @ (off_ref[c] + probe)) / window.box)
            q = (parts.q_re[part[c]] + 1j * parts.q_im[part[c]]) * ph
            centred.q_re[part[c]], centred.q_im[part[c]] = q.real, q.imag
            val, _ = ccsearch.score_candidates(
                prep.arrays, w1, centred, cand[c : c + 1], part[c : c + 1], refine=False
            )
            if not probe.any():
                top = val[0]
                np.testing.assert_allclose(top, cc_ref[c], rtol=1e-5)
            else:
                assert val[0] < top


@needs_cuda
def test_cuda_matches_cpu():
    """Same CC and shifts from the CUDA twin (simulator without a GPU), with and without refinement."""
    prep, window, particles, cand, part = _tiny_problem(n_random=1)
    for refine in (False, True):
        cpu_cc, cpu_off = ccsearch.score_candidates(
            prep.arrays, window, particles, cand, part, "cpu", refine
        )
        gpu_cc, gpu_off = ccsearch.score_candidates(
            prep.arrays, window, particles, cand, part, "cuda", refine
        )
        print(
            f"\nrefine={refine}: max |dCC| {np.abs(cpu_cc - gpu_cc).max():.2e}, "
            f"max |dshift| {np.abs(cpu_off - gpu_off).max():.2e} px"
        )
        np.testing.assert_allclose(gpu_cc, cpu_cc, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(gpu_off, cpu_off, atol=2e-3)


def test_cuda_without_device_raises_clear_error():
    """Without a GPU and without the simulator, device='cuda' is a RuntimeError naming the problem."""
    assert_cuda_call_fails_clearly(
        "import numpy as np\n"
        "from stasnake.sta.align import SearchParams, prepare_reference, align_particles\n"
        "p = SearchParams(0, 10, 0, 10, low=3)\n"
        "ref = prepare_reference(np.ones((8, 8, 8), np.float32), p)\n"
        "try:\n"
        "    align_particles(np.ones((1, 8, 8, 8)), np.eye(3)[None], np.zeros((1, 3)), [[-60, 60]], ref, p,\n"
        "                    device='cuda')\n"
        "except RuntimeError as e:\n"
        "    print('RuntimeError:', e)\n"
    )
