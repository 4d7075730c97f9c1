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


# ----------------------------------------------------------------------------- kernel vs references
def _reference_backprojection(proj_tuy, angles_deg, weights, nz, nx):
    """Direct float64 transcription of the documented per-voxel formula (no blocking, no grouping)."""
    n_t, nu_pad, sy = proj_tuy.shape
    nu = nu_pad - 2
    z = (np.arange(nz) - nz // 2)[:, None]
    x = (np.arange(nx) - nx // 2)[None, :]
    out = np.zeros((nz, sy, nx))
    for t, a in enumerate(np.radians(angles_deg)):
        u = nu // 2 + x * np.cos(a) + z * np.sin(a) + 1.0  # padded column index
        inside = (u >= 0) & (u < nu + 1)
        i0 = np.clip(np.floor(u), 0, nu).astype(int)
        f = u - i0
        val = (1 - f)[..., None] * proj_tuy[t, i0, :] + f[..., None] * proj_tuy[t, i0 + 1, :]  # (nz, nx, sy)
        out += weights[t] * (inside[..., None] * val).transpose(0, 2, 1)
    return out


def _reference_filter(rows, response, n_padded):
    """numpy.fft version of the zero-padded row filter, float64."""
    spec = np.fft.rfft(rows.astype(np.float64), n=n_padded, axis=-1) * response
    return np.fft.irfft(spec, n=n_padded, axis=-1)[..., : rows.shape[-1]]


@pytest.mark.parametrize(
    ("n_t", "sy", "nz", "nx", "tile_x"),
    [(41, 16, 12, 40, 128), (7, 13, 9, 33, 8), (1, 1, 5, 6, 4), (5, 20, 30, 24, 7), (4, 8, 3, 50, 16)],
)
def test_kernel_matches_reference_backprojection(n_t, sy, nz, nx, tile_x):
    """Tilt counts that are and are not multiples of the tilt group, odd sizes, voxels off the detector."""
    from stasnake.kernels.backproject import backproject_slab

    rng = np.random.default_rng(n_t * 100 + sy)
    angles = np.sort(rng.uniform(-70.0, 70.0, n_t))
    nu = nx - 3  # narrower detector than the volume: some voxels project outside it
    proj = np.zeros((n_t, nu + 2, sy), np.float32)
    proj[:, 1:-1, :] = rng.standard_normal((n_t, nu, sy))
    w = rng.uniform(0.02, 0.1, n_t)
    rad = np.radians(angles)
    out = np.full((nz, sy, nx), np.nan, np.float32)
    backproject_slab(proj, np.cos(rad), np.sin(rad), w, nz, nx, out, tile_x=tile_x)
    ref = _reference_backprojection(proj.astype(np.float64), angles, w, nz, nx)
    scale = float(np.abs(ref).max())
    np.testing.assert_allclose(out, ref, rtol=0, atol=2e-5 * scale)
    # a strided destination (a y-slab of a larger volume) gets the same values
    vol = np.zeros((nz, sy + 5, nx), np.float32)
    backproject_slab(proj, np.cos(rad), np.sin(rad), w, nz, nx, vol[:, 2:2 + sy, :], tile_x=tile_x)
    np.testing.assert_array_equal(vol[:, 2:2 + sy, :], out)
    assert not vol[:, :2].any() and not vol[:, 2 + sy:].any()


def test_kernel_rejects_bad_shapes():
    from stasnake.kernels.backproject import backproject_slab

    proj = np.zeros((3, 10, 4), np.float32)
    c = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="out_zyx"):
        backproject_slab(proj, c, c, c, 5, 8, np.zeros((5, 8, 4), np.float32))  # (z, x, y) layout
    with pytest.raises(ValueError, match="out_zyx"):
        backproject_slab(proj, c, c, c, 5, 8, np.zeros((5, 4, 8), np.float64))
    with pytest.raises(ValueError, match="one per tilt"):
        backproject_slab(proj, c[:2], c, c, 5, 8, np.zeros((5, 4, 8), np.float32))


@pytest.mark.parametrize("sy", [5, 6])
def test_filtered_projections_layout_and_values(sy):
    """Row pairs filtered as one complex FFT (odd and even sy) equal the plain zero-padded rfft filter."""
    from stasnake.tilt.reconstruct import (
        _filter_workspace,
        _filtered_projections,
        _padded_length,
        ramp_filter,
    )

    rng = np.random.default_rng(11)
    n_t, nu = 9, 37
    rows = rng.standard_normal((n_t, sy, nu)).astype(np.float32)
    n_pad = _padded_length(nu)
    resp = ramp_filter(n_pad, "hamming")
    ref = _reference_filter(rows, resp, n_pad)
    # a workspace of 2 tilts with more row pairs than needed: several chunks, the last one partial
    small = np.full((2, sy // 2 + 3, n_pad), np.nan, np.complex64)
    out = np.full((n_t, nu + 2, sy), np.nan, np.float32)
    for workspace, dest in ((None, None), (small, out), (_filter_workspace(n_t, sy, n_pad), out)):
        for source in (rows, rows.astype(np.float16).astype(np.float64)):
            proj = _filtered_projections(source, resp, n_pad, 2, workspace, out=dest)
            assert proj.shape == (n_t, nu + 2, sy) and proj.dtype == np.float32 and proj.flags.c_contiguous
            assert dest is None or proj is dest
            assert not proj[:, 0].any() and not proj[:, -1].any()
            expect = ref if source is rows else _reference_filter(source, resp, n_pad)
            np.testing.assert_allclose(proj[:, 1:-1, :], expect.transpose(0, 2, 1), rtol=0,
                                       atol=1e-5 * np.abs(ref).max())


def test_reconstruct_matches_reference_wbp():
    """End to end (filter + layout + kernel) against numpy.fft + the direct back-projection."""
    from stasnake.tilt.reconstruct import _padded_length, ramp_filter

    rng = np.random.default_rng(12)
    n_t, ny, nu, nz = 13, 11, 30, 17
    angles = np.linspace(-57.0, 62.0, n_t)
    stack = rng.standard_normal((n_t, ny, nu)).astype(np.float32)
    n_pad = _padded_length(nu)
    filtered = _reference_filter(stack, ramp_filter(n_pad), n_pad)  # (t, y, u)
    proj = np.zeros((n_t, nu + 2, ny))
    proj[:, 1:-1, :] = filtered.transpose(0, 2, 1)
    ref = _reference_backprojection(proj, angles, tilt_weights(angles), nz, nu)  # (z, y, x)
    scale = float(np.abs(ref).max())
    for slab in (4, 64):
        vol = reconstruct_wbp(stack, angles, nz, slab_size=slab)
        np.testing.assert_allclose(vol, ref, rtol=0, atol=2e-5 * scale)
    # float64 and memmap outputs (not written in place by the kernel / written in place)
    out64 = np.zeros((nz, ny, nu), np.float64)
    reconstruct_wbp(stack, angles, nz, out=out64, slab_size=5)
    np.testing.assert_allclose(out64, ref, rtol=0, atol=2e-5 * scale)


def test_reconstruct_into_memmap(tmp_path):
    rng = np.random.default_rng(13)
    stack = rng.standard_normal((len(ANGLES), 9, 20)).astype(np.float32)
    ref = reconstruct_wbp(stack, ANGLES, 8)
    mm = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.float32, shape=(8, 9, 20))
    assert reconstruct_wbp(stack, ANGLES, 8, out=mm, slab_size=4) is mm
    mm.flush()
    del mm
    np.testing.assert_array_equal(np.load(tmp_path / "v.npy"), ref)


def test_bad_arguments():
    stack = np.zeros((3, 4, 8), np.float32)
    with pytest.raises(ValueError, match="device"):
        reconstruct_wbp(stack, [0, 1, 2], 4, device="tpu")
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


# ----------------------------------------------------------------------------- SIRT-like filter
def test_sirt_like_window_limits():
    from stasnake.tilt.reconstruct import ramp_filter, sirt_like_window

    f = np.linspace(0.0, 0.5, 257)
    w5, w20 = sirt_like_window(f, 5), sirt_like_window(f, 20)
    assert np.all((w5 >= 0) & (w5 <= 1)) and w5[0] == 1.0
    assert np.all(np.diff(w5) <= 1e-12)  # low-pass: decreasing with frequency
    assert np.all(w20 >= w5 - 1e-12)  # more iterations -> closer to the ramp
    # high frequency: k alpha / f (Zeng's first-order behaviour)
    assert w5[-1] == pytest.approx(5 * 0.00195 / 0.5, rel=0.05)
    # many iterations converge to plain R-weighting
    np.testing.assert_allclose(ramp_filter(512, "sirt-like", 5000), ramp_filter(512, "ramp"), atol=1e-3 * 0.5)
    with pytest.raises(ValueError):
        sirt_like_window(f, 0)


def test_sirt_like_has_higher_low_frequency_fidelity_on_noisy_phantom():
    """Noisy projections of a phantom: SIRT-like correlates better with the low-passed phantom."""
    from scipy.ndimage import gaussian_filter
    from skimage.data import shepp_logan_phantom
    from skimage.transform import radon, rescale

    n = 127
    phantom = rescale(shepp_logan_phantom(), n / 400.0, anti_aliasing=True)[:n, :n]
    theta = np.arange(-60.0, 60.1, 3.0)
    sino = radon(phantom, theta=theta, circle=True)
    rng = np.random.default_rng(0)
    noisy = sino + 0.5 * sino.std() * rng.standard_normal(sino.shape)
    stack = noisy.T[:, None, :].astype(np.float32)
    yy, xx = np.mgrid[0:n, 0:n] - n // 2
    inside = xx**2 + yy**2 < (n // 2 - 4) ** 2
    low = gaussian_filter(phantom, 3.0)

    def corr(filter_name):
        vol = reconstruct_wbp(stack, theta, n, filter=filter_name, sirt_iterations=10)
        return np.corrcoef(vol[::-1, 0, :][inside], low[inside])[0, 1]

    r_ramp, r_sirt = corr("ramp"), corr("sirt-like")
    # measured: ramp 0.35, sirt-like (10 iterations) 0.85
    assert r_sirt > 0.75
    assert r_sirt > r_ramp + 0.3


# ----------------------------------------------------------------------------- bounded-memory output
def test_mrc_output_header_statistics_and_float16(tmp_path):
    import mrcfile

    rng = np.random.default_rng(6)
    stack = rng.standard_normal((len(ANGLES), 13, 20)).astype(np.float32)
    ref = reconstruct_wbp(stack, ANGLES, 10)
    path = tmp_path / "t.mrc"
    reconstruct_wbp_to_mrc(stack, ANGLES, 10, path, 3.0, slab_size=4, filter="sirt-like", sirt_iterations=5)
    ref_sirt = reconstruct_wbp(stack, ANGLES, 10, filter="sirt-like", sirt_iterations=5)
    with mrcfile.open(path) as mrc:
        np.testing.assert_allclose(mrc.data, ref_sirt, rtol=1e-5, atol=1e-6)
        h = mrc.header
        assert float(h.dmin) == pytest.approx(ref_sirt.min(), rel=1e-6)
        assert float(h.dmax) == pytest.approx(ref_sirt.max(), rel=1e-6)
        assert float(h.dmean) == pytest.approx(ref_sirt.mean(dtype=np.float64), rel=1e-5, abs=1e-7)
        assert float(h.rms) == pytest.approx(ref_sirt.std(dtype=np.float64), rel=1e-5)
    reconstruct_wbp_to_mrc(stack, ANGLES, 10, tmp_path / "h.mrc", 3.0, slab_size=5, dtype="float16")
    data, _ = read_mrc(tmp_path / "h.mrc")
    assert data.dtype == np.float16
    np.testing.assert_allclose(data.astype(np.float32), ref, atol=2e-3 * float(np.abs(ref).max()))
    # failure mid-way: nothing under the final name, no temporary left behind
    with pytest.raises(ValueError):
        reconstruct_wbp_to_mrc(stack, ANGLES[:-1], 10, tmp_path / "bad.mrc", 3.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.mrc", "t.mrc"]


@pytest.mark.parametrize(("shape", "factor"), [((40, 52, 60), 2), ((33, 47, 50), 3)])
def test_bin_mrc_fourier_matches_in_memory_binning(tmp_path, shape, factor):
    import mrcfile
    from scipy.ndimage import gaussian_filter

    from stasnake.io.mrc import write_mrc
    from stasnake.tilt.reconstruct import bin_mrc_fourier

    rng = np.random.default_rng(7)
    vol = (gaussian_filter(rng.standard_normal(shape), 1.5) + 0.3 * rng.standard_normal(shape)).astype(np.float32)
    write_mrc(tmp_path / "in.mrc", vol, 2.0)
    ref = bin_volume_fourier(vol, factor)
    # tiny blocks: many z-blocks in pass 1 and many y-chunks in pass 2
    out_shape = bin_mrc_fourier(tmp_path / "in.mrc", tmp_path / "out.mrc", factor, block_bytes=4096 * 8)
    data, apix = read_mrc(tmp_path / "out.mrc")
    assert out_shape == data.shape == ref.shape
    assert apix == pytest.approx(2.0 * factor)
    np.testing.assert_allclose(data, ref, rtol=1e-5, atol=1e-6 * float(np.abs(ref).max()))
    assert np.corrcoef(data.ravel(), ref.ravel())[0, 1] > 0.9999
    with mrcfile.open(tmp_path / "out.mrc") as mrc:
        assert float(mrc.header.rms) == pytest.approx(ref.std(dtype=np.float64), rel=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mrc", "out.mrc"]


def test_separable_binning_close_to_full_3d_fourier_crop():
    """The separable crop equals the 3-D rfftn crop except for the split of even Nyquist terms."""
    import scipy.fft

    rng = np.random.default_rng(8)
    z, y, x = np.mgrid[0:32, 0:40, 0:48].astype(float)
    vol = (np.sin(2 * np.pi * (3 * x / 48 + 2 * z / 32)) + np.cos(2 * np.pi * 5 * y / 40)).astype(np.float32)
    vol += 0.05 * rng.standard_normal(vol.shape).astype(np.float32)
    new = (16, 20, 24)
    spec = scipy.fft.rfftn(vol, norm="forward")
    iz, iy = (np.fft.fftfreq(m, 1.0 / m).astype(int) % n for n, m in zip(vol.shape[:2], new[:2], strict=True))
    full = scipy.fft.irfftn(spec[np.ix_(iz, iy, np.arange(new[2] // 2 + 1))], s=new, norm="forward")
    sep = bin_volume_fourier(vol, 2)
    assert np.corrcoef(sep.ravel(), full.ravel())[0, 1] > 0.99
