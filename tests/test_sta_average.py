"""average_particles: known-pose averaging, missing-wedge compensation, Cn symmetry, binning, partial sums.

Accuracy tests compare averages of synthetic wedged particles (``simulate_particles``
of the C6 unit map, true poses) with the truth; run with ``pytest -s`` for the numbers.
"""

import logging

import numpy as np
import pytest
import scipy.fft
from scipy.spatial.transform import Rotation

from stasnake.errors import InputError
from stasnake.geometry.euler import dynamo_euler_to_matrix
from stasnake.io.dynamo_table import new_table
from stasnake.sta.average import (
    accumulate_particles,
    average_particles,
    combine_sums,
    finish_average,
    load_sums,
    save_sums,
    symmetrize_cn,
    tilt_ranges_from_table,
)
from stasnake.sta.fsc import fourier_shell_correlation, resolution_at
from stasnake.sta.rotate import rotate_volume, rotation_about_z
from stasnake.sta.wedge import apply_wedge, fourier_pixel_grid
from stasnake.synth.particles import random_rotations, simulate_particles
from stasnake.synth.unit import unit_map


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


def test_cubic_interpolation_keeps_the_amplitudes_near_nyquist(truth):
    """Noise-free wedged copies of the unit at random poses and subpixel shifts: trilinear
    rotation attenuates each particle by its own subpixel offset, cubic B-splines far less, so
    the average keeps more of the truth's amplitude in the top shells (17-11 Å of the 32 box)
    and is at least as well correlated with it."""
    rng = np.random.default_rng(21)
    mats = random_rotations(24, rng)
    parts, shifts = _simulate(truth, mats, rng, snr=np.inf)
    gain, cc = {}, {}
    ft = scipy.fft.rfftn(truth)
    kx, ky, kz = fourier_pixel_grid(truth.shape[0])
    top = (np.sqrt(kx**2 + ky**2 + kz**2) >= 10) & (np.sqrt(kx**2 + ky**2 + kz**2) < 16)
    for order in (1, 3):
        avg = average_particles(parts, mats, shifts, TILT, symmetry=6, interpolation_order=order)
        fa = scipy.fft.rfftn(avg)
        gain[order] = float(np.sqrt((np.abs(fa[top]) ** 2).sum() / (np.abs(ft[top]) ** 2).sum()))
        cc[order] = float(np.real((fa * np.conj(ft))[top].sum()) / np.sqrt((np.abs(fa[top]) ** 2).sum()
                                                                           * (np.abs(ft[top]) ** 2).sum()))
    print(f"top shells: amplitude gain trilinear {gain[1]:.3f}, cubic {gain[3]:.3f}; "
          f"correlation {cc[1]:.4f}, {cc[3]:.4f}")
    # measured: gain 0.61 trilinear, 0.88 cubic (the simulated particles lose some themselves);
    # correlation 0.990, 0.997
    assert gain[3] > gain[1] + 0.15 and 0.8 < gain[3] < 1.1
    assert cc[3] > cc[1]
    with pytest.raises(ValueError, match="interpolation_order"):
        average_particles(parts[:1], mats[:1], shifts[:1], interpolation_order=2)


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


# ----------------------------------------------------------------------------- wedge compensation against truth
TILT = (-60.0, 60.0)
APIX = 5.4


@pytest.fixture(scope="module")
def truth():
    return unit_map(32, APIX).astype(np.float32)


def _simulate(truth, mats, rng, snr):
    shifts = rng.uniform(-1.5, 1.5, (len(mats), 3))
    return simulate_particles(truth, mats, shifts, rng, TILT, snr=snr), shifts


def _rel_err(avg, ref, truth):
    """||avg - ref|| / ||truth - mean(truth)||: scale-sensitive error."""
    return float(np.linalg.norm(avg - ref) / np.linalg.norm(truth - truth.mean()))


def _band_gain_and_cc(avg, truth, cone):
    """Amplitude gain sqrt(P_avg / P_truth) and correlation over 2 < |k| < 12 px^-1 in a direction set."""
    fa, ft = scipy.fft.rfftn(avg), scipy.fft.rfftn(truth)
    kx, ky, kz = fourier_pixel_grid(avg.shape[0])
    kr = np.sqrt(kx**2 + ky**2 + kz**2)
    cos_z = np.abs(kz) / np.maximum(kr, 1e-9)
    band = (kr > 2) & (kr < 12)
    sel = band & {"z": cos_z > 0.8, "xy": cos_z < 0.3, "all": np.ones_like(cos_z, dtype=bool)}[cone]
    pa, pt = (np.abs(fa[sel]) ** 2).sum(), (np.abs(ft[sel]) ** 2).sum()
    return float(np.sqrt(pa / pt)), float(np.real((fa * np.conj(ft))[sel].sum()) / np.sqrt(pa * pt))


@pytest.fixture(scope="module")
def random_set(truth):
    rng = np.random.default_rng(11)
    mats = random_rotations(40, rng)
    parts, shifts = _simulate(truth, mats, rng, snr=0.5)
    return parts, mats, shifts


def test_compensation_recovers_amplitudes_of_randomly_oriented_particles(truth, random_set):
    """Uniform orientations: every k is measured by ~2/3 of the particles; the raw average keeps 2/3 of it."""
    parts, mats, shifts = random_set
    sums = accumulate_particles(parts, mats, shifts, TILT)
    comp, weight = finish_average(sums)
    raw, _ = finish_average(sums, wedge_compensation=False)
    rows = {}
    for name, avg in (("compensated", comp), ("raw", raw)):
        fsc = fourier_shell_correlation(avg, truth, APIX)
        gain, cc = _band_gain_and_cc(avg, truth, "all")
        rows[name] = {
            "rel_err": _rel_err(avg, truth, truth),
            "gain": gain,
            "cc_band": cc,
            "mean_fsc": float(fsc.fsc[1:15].mean()),
            "cc": float(_cc(avg, truth, np.ones(truth.shape, bool))),
        }
    print("\n40 random poses, snr 0.5, +-60 deg:", {k: {m: round(v, 4) for m, v in r.items()} for k, r in rows.items()})
    # measured: compensated rel_err 0.21, gain 0.85 (trilinear interpolation), raw rel_err 0.44, gain 0.57
    assert rows["compensated"]["rel_err"] < 0.3
    assert rows["raw"]["rel_err"] > rows["compensated"]["rel_err"] + 0.15
    assert 0.75 < rows["compensated"]["gain"] < 1.05
    assert rows["raw"]["gain"] < 0.7
    assert rows["compensated"]["mean_fsc"] >= rows["raw"]["mean_fsc"] - 0.002  # FSC ignores the scale: ~equal
    assert rows["compensated"]["cc"] > 0.97
    # weight map: fftshifted, zero frequency at the centre = number of particles; ~2/3 of them elsewhere
    assert weight.shape == (32, 32, 32) and weight[16, 16, 16] == 40
    inner = weight[1:, 1:, 1:]  # without the Nyquist planes (k = -16 has no +16 mate)
    np.testing.assert_array_equal(inner, inner[::-1, ::-1, ::-1])  # W(-k) = W(k)
    assert 0.55 < np.median(weight) / 40 < 0.75


def test_compensation_removes_smearing_when_axes_share_the_beam_direction(truth):
    """Axes along the beam, random in-plane angles: a missing cone; the raw average is smeared along z."""
    rng = np.random.default_rng(12)
    mats = np.stack([rotation_about_z(a) for a in rng.uniform(0, 360, 40)])
    parts, shifts = _simulate(truth, mats, rng, snr=0.5)
    sums = accumulate_particles(parts, mats, shifts, TILT)
    rows = {}
    for name, comp in (("compensated", True), ("raw", False)):
        avg, _ = finish_average(sums, wedge_compensation=comp)
        fsc = fourier_shell_correlation(avg, truth, APIX)
        rows[name] = {
            "res_0.5_A": resolution_at(fsc, 0.5),
            "gain_z": _band_gain_and_cc(avg, truth, "z")[0],
            "gain_xy": _band_gain_and_cc(avg, truth, "xy")[0],
            "rel_err": _rel_err(avg, truth, truth),
        }
    print("\n40 poses about the beam axis:", {k: {m: round(v, 3) for m, v in r.items()} for k, r in rows.items()})
    # measured: compensated 12.7 A, raw 36.6 A at FSC 0.5; z-cone gain 0.28 vs 0.10 (the cone itself stays empty)
    assert rows["compensated"]["res_0.5_A"] < 16.0
    assert rows["raw"]["res_0.5_A"] > 28.0
    assert rows["compensated"]["gain_z"] > 2.0 * rows["raw"]["gain_z"]
    assert rows["compensated"]["rel_err"] < rows["raw"]["rel_err"] - 0.03


def test_nearly_equal_orientations_do_not_blow_up(truth):
    """38 poses within ~2 deg of one orientation plus 2 random outliers, snr 0.1.

    The wedge of the common orientation is measured only by the outliers (weight 1-2): without a floor their
    noise fills it at full strength; the default floor (0.1 x count) damps it.
    """
    rng = np.random.default_rng(13)
    r0 = Rotation.from_euler("zyz", [30, 50, 10], degrees=True).as_matrix()
    mats = r0 @ Rotation.from_rotvec(rng.normal(0, np.radians(2), (38, 3))).as_matrix()
    mats = np.concatenate([mats, random_rotations(2, rng)])
    parts, shifts = _simulate(truth, mats, rng, snr=0.1)
    sums = accumulate_particles(parts, mats, shifts, TILT)
    wedged_truth = apply_wedge(truth, TILT, r0)
    norm = np.linalg.norm(truth - truth.mean())
    rows = {}
    for name, kw in (
        ("default", {}),
        ("zero", {"below_fmin": "zero"}),
        ("no floor", {"fmin": 1e-6}),
        ("raw", {"wedge_compensation": False}),
    ):
        avg, weight = finish_average(sums, **kw)
        rows[name] = {
            "rel_err": _rel_err(avg, truth, truth),
            "rel_err_wedged": _rel_err(avg, wedged_truth, truth),
            "norm": float(np.linalg.norm(avg - avg.mean()) / norm),
            "max": float(np.abs(avg).max() / np.abs(truth).max()),
        }
    print(
        "\nnearly equal poses + 2 outliers, snr 0.1:",
        {k: {m: round(v, 3) for m, v in r.items()} for k, r in rows.items()},
    )
    # measured: default rel_err 0.50, norm 0.86; no floor 0.67, 1.07; raw 0.55, 0.78
    assert np.mean((weight > 0) & (weight < 4)) > 0.1  # the outliers alone measure a sizeable region
    for name in ("default", "zero"):
        assert rows[name]["norm"] < 0.95 and rows[name]["max"] < 1.0
        assert rows[name]["rel_err_wedged"] < rows["no floor"]["rel_err_wedged"] - 0.2
    assert rows["default"]["rel_err"] < rows["no floor"]["rel_err"] - 0.1
    assert rows["default"]["rel_err"] < rows["raw"]["rel_err"] + 0.05
    assert np.isfinite(finish_average(sums, fmin=0.0)[0]).all()


def test_cn_symmetry_on_the_sums_fills_the_wedge(truth):
    """C6 truth, poses near one orientation with the six-fold axis along the tilt axis: the copies fill the wedge."""
    rng = np.random.default_rng(14)
    r0 = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).T  # reference z -> tomogram y
    mats = r0 @ Rotation.from_rotvec(rng.normal(0, np.radians(3), (30, 3))).as_matrix()
    parts, shifts = _simulate(truth, mats, rng, snr=0.5)
    sums = accumulate_particles(parts, mats, shifts, TILT)
    c1, _ = finish_average(sums)
    c6, weight6 = finish_average(sums, symmetry_order=6)
    c6_real = symmetrize_cn(c1, 6)
    rows = {
        name: {"rel_err": _rel_err(a, truth, truth), "cc": float(_cc(a, truth, np.ones(a.shape, bool)))}
        for name, a in (("c1", c1), ("c6 sums", c6), ("c6 of the c1 map", c6_real))
    }
    print("\nC6, axis along the tilt axis:", {k: {m: round(v, 4) for m, v in r.items()} for k, r in rows.items()})
    # measured: c6 on the sums rel_err 0.19; symmetrising the compensated c1 map 0.39 (copies' wedges averaged in)
    assert rows["c6 sums"]["rel_err"] < 0.25
    assert rows["c6 sums"]["rel_err"] < rows["c6 of the c1 map"]["rel_err"] - 0.1
    assert rows["c6 sums"]["cc"] > 0.98 > rows["c1"]["cc"]
    z, y, x = np.mgrid[0:32, 0:32, 0:32] - 16
    mask = x**2 + y**2 < 12**2
    assert _cc(rotate_volume(c6, rotation_about_z(60.0)), c6, mask) > 0.99
    assert weight6[16, 16, 16] == 6 * 30


def test_dim_bins_on_the_fly(truth, random_set):
    parts, mats, shifts = random_set
    full = accumulate_particles(parts[:12], mats[:12], shifts[:12], TILT)
    binned = accumulate_particles(parts[:12], mats[:12], shifts[:12], TILT, dim=16, pixel_size_angstrom=APIX)
    assert binned.dim == 16 and binned.pixel_scale == 2.0 and binned.pixel_size_angstrom == pytest.approx(2 * APIX)
    avg16, weight16 = finish_average(binned)
    avg32, _ = finish_average(full)
    assert avg16.shape == weight16.shape == (16, 16, 16)
    # the binned average is the Fourier crop of the full-size one (same sums, same weights)
    np.testing.assert_allclose(avg16, _fourier_crop(avg32, 16), atol=1e-5 * float(np.abs(avg16).max()))
    fsc = fourier_shell_correlation(avg16, _fourier_crop(truth, 16), APIX * binned.pixel_scale)
    print("\nFSC of the dim-16 average vs the binned truth:", fsc.fsc.round(3).tolist())
    assert fsc.fsc[1:].min() > 0.9
    assert abs(avg16.mean() - avg32.mean()) < 1e-3 * abs(avg32.mean()) + 1e-7


def test_result_does_not_depend_on_chunks(tmp_path, random_set):
    parts, mats, shifts = random_set
    parts, mats, shifts = parts[:15], mats[:15], shifts[:15]
    ranges = np.tile(TILT, (15, 1))
    ranges[::2] = (-50.0, 65.0)
    whole = accumulate_particles(parts, mats, shifts, ranges)
    chunks = [
        accumulate_particles(parts[s], mats[s], shifts[s], ranges[s], pixel_size_angstrom=APIX)
        for s in (slice(0, 4), slice(4, 11), slice(11, 15))
    ]
    for i, c in enumerate(chunks):
        save_sums(tmp_path / f"chunk{i}.npz", c)
    loaded = [load_sums(tmp_path / f"chunk{i}.npz") for i in range(3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk0.npz", "chunk1.npz", "chunk2.npz"]
    for combined in (combine_sums(loaded), sum(loaded), loaded[0] + loaded[1] + loaded[2]):
        assert combined.count == 15 and combined.pixel_size_angstrom == pytest.approx(APIX)
        for order in (1, 3):
            a, w = finish_average(whole, symmetry_order=order)
            b, v = finish_average(combined, symmetry_order=order)
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * float(np.abs(a).max()))
            np.testing.assert_allclose(v, w, rtol=0, atol=1e-5 * float(w.max()))
    with pytest.raises(ValueError, match="cannot add"):
        whole + accumulate_particles(parts[:2], mats[:2], shifts[:2], ranges[:2], dim=16)


def test_without_wedge_it_is_the_plain_mean():
    rng = np.random.default_rng(15)
    ref = asymmetric_object(16, sigma=1.5)
    parts, mats, shifts = _make_particles(ref, 5, rng, noise=0.3)
    plain = np.mean([rotate_volume(p, r, s) for p, r, s in zip(parts, mats, shifts, strict=True)], axis=0)
    for comp in (True, False):
        avg, weight = average_particles(parts, mats, shifts, wedge_compensation=comp, return_weight=True)
        np.testing.assert_allclose(avg, plain, atol=1e-5 * float(np.abs(plain).max()))
        assert np.all(weight == 5)


def test_tilt_ranges_from_table():
    table = new_table(3, ftype=np.array([1, 0, 1]), ymintilt=np.array([-54.0, -60.0, -40.0]))
    np.testing.assert_array_equal(tilt_ranges_from_table(table), [[-54, 60], [-90, 90], [-40, 60]])
    with pytest.raises(InputError, match="ftype 2"):
        tilt_ranges_from_table(new_table(2, ftype=2))
    with pytest.raises(InputError, match="row 1"):
        tilt_ranges_from_table(new_table(1, ymintilt=70.0))


def test_load_sums_rejects_other_files(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(3))
    with pytest.raises(InputError, match="partial-sums"):
        load_sums(tmp_path / "x.npz")


def _fourier_crop(volume, d):
    """Fourier crop of an (n, n, n) volume to (d, d, d), real-space values kept."""
    n = volume.shape[0]
    f = (np.fft.fftfreq(d) * d).astype(int) % n
    ft = scipy.fft.rfftn(volume)[f][:, f][:, :, : d // 2 + 1]
    return (scipy.fft.irfftn(ft, s=(d, d, d)) * (d / n) ** 3).astype(np.float32)


def test_memmapped_stack_is_read_one_particle_at_a_time(tmp_path, monkeypatch, random_set):
    """A read-only MRC memmap (the particles.mrc layout) averages like the array; its pages are released."""
    import stasnake.sta.average as average_module
    from stasnake.io.mrc import read_mrc
    from stasnake.io.particle_export import write_particle_stack

    parts, mats, shifts = (a[:6] for a in random_set)
    write_particle_stack(tmp_path / "p.mrc", iter(parts), 6, 32, APIX)
    stack, apix = read_mrc(tmp_path / "p.mrc", mmap=True)
    in_memory = accumulate_particles(parts, mats, shifts, TILT)
    released = []
    monkeypatch.setattr(average_module, "_RELEASE_BYTES", 2 * 4 * 32**3)  # release every 2 particles
    original = average_module._release_file_pages
    monkeypatch.setattr(average_module, "_release_file_pages", lambda p: released.append(1) or original(p))
    from_file = accumulate_particles(stack, mats, shifts, TILT)
    assert stack.shape == parts.shape and apix == pytest.approx(APIX)
    assert len(released) == 3
    np.testing.assert_array_equal(from_file.spectrum, in_memory.spectrum)
    np.testing.assert_array_equal(from_file.weight, in_memory.weight)
