"""CTF and exposure transfer of subtomograms, and the CTF-weighted average that divides it out."""

import json

import numpy as np
import pytest

from stasnake.errors import InputError
from stasnake.kernels.accumulate import accumulate_spectrum, wedge_parameters
from stasnake.sta.average import accumulate_particles, finish_average
from stasnake.sta.fsc import fourier_shell_correlation
from stasnake.sta.rotate import rotate_volume
from stasnake.sta.transfer import (
    ParticleTransfers,
    load_particle_transfers,
    read_transfer,
    transfer_from_tilts,
    transfer_table,
    write_transfer,
)
from stasnake.tilt.ctf import ctf_2d
from stasnake.tilt.dose import dose_filter

APIX = 5.4
SHAPE = (160, 384, 384)  # tomogram (z, y, x): tilt axis at x = 192, mid-plane z = 80 (0-based)
CENTRE_1BASED = (193.0, 193.0, 81.0)


def _model(defocus=30000.0, flipped=True, reduction=0.2, angles=None):
    angles = np.arange(-60.0, 61.0, 3.0) if angles is None else np.asarray(angles, float)
    pre = 3.0 * np.argsort(np.argsort(np.abs(angles)))  # dose-symmetric-like: low tilts first
    return transfer_from_tilts(angles, np.full(angles.size, defocus), pre, 3.0, phase_flipped=flipped,
                               dose_weighting_reduction=reduction, voltage_kv=300.0, cs_mm=2.7,
                               amplitude_contrast=0.1, pixel_size_angstrom=APIX, tomogram_shape_zyx=SHAPE)  # fmt: skip


def _radial(values_2d, n):
    """Values of an rfft2 grid of an n x n image along the kx axis (ky = 0), |k| = 0 .. n/2."""
    return values_2d[0, : n // 2 + 1]


def test_transfer_of_a_particle_on_the_tilt_axis_is_ctf_times_damage_times_weighting():
    """Centre of the tomogram, phase-flipped: H = |CTF| x exposure attenuation x applied dose weight (no sign errors)."""
    box = 32
    model = _model()
    tilts, table, samples = transfer_table(model, CENTRE_1BASED, box, APIX)
    assert samples == 4 and np.allclose(np.degrees(tilts), model.tilt_angle_deg)
    i = int(np.flatnonzero(model.tilt_angle_deg == 30.0)[0])
    pre = model.pre_exposure_e_per_A2[i]
    n = box  # the table at j = k * samples, k cycles per box: compare with 2-D filters of an n-image along kx
    ctf = _radial(ctf_2d((n, n), APIX, 30000.0, 30000.0, 0.0), n)
    damage = _radial(dose_filter((n, n), APIX, pre, 3.0), n)
    weighting = _radial(dose_filter((n, n), APIX, 0.8 * (pre + 3.0)), n)
    expected = np.abs(ctf) * damage * weighting
    expected[0] = 0.1  # k = 0: the flip leaves the mean; -CTF(0) = amplitude contrast
    np.testing.assert_allclose(table[i, :: int(samples)][: n // 2 + 1], expected, rtol=1e-6, atol=1e-9)
    assert (table >= -1e-12).all()  # at the strip centre the flip is right everywhere


def test_transfer_follows_the_particle_height_and_the_flip():
    """Off the mid-plane the strip flip misses the particle's defocus at high resolution: H changes sign there.

    Without phase flipping H is -CTF: it changes sign at every CTF zero.
    """
    box = 48
    model = _model()
    _, on_plane, _ = transfer_table(model, CENTRE_1BASED, box, APIX)
    _, high, _ = transfer_table(model, (193.0, 193.0, 81.0 + 70.0), box, APIX)  # 378 Å above the mid-plane
    assert (on_plane >= -1e-12).all() and (high < -1e-3).any()
    _, raw, _ = transfer_table(_model(flipped=False), CENTRE_1BASED, box, APIX)
    assert raw[:, 0].min() > 0 and (raw < -0.1).any()  # positive at low resolution, then the CTF lobes
    _, unweighted, _ = transfer_table(_model(reduction=None), CENTRE_1BASED, box, APIX)
    assert (np.abs(unweighted) >= np.abs(on_plane) - 1e-12).all()  # dose weighting only attenuates


def test_transfer_model_file_round_trip_and_errors(tmp_path):
    model = _model(angles=[30.0, -30.0, 0.0])  # any order in, sorted by angle
    assert model.tilt_angle_deg.tolist() == [-30.0, 0.0, 30.0]
    path = tmp_path / "TS_01_transfer.json"
    write_transfer(path, model)
    back = read_transfer(path)
    for name in ("tilt_angle_deg", "defocus_angstrom", "pre_exposure_e_per_A2", "weighting_exposure_e_per_A2"):
        np.testing.assert_array_equal(getattr(back, name), getattr(model, name))
    assert back.phase_flipped and back.centre_x_angstrom == 192 * APIX
    data = json.loads(path.read_text())
    del data["defocus_angstrom"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="TS_01_transfer.json.*defocus_angstrom"):
        read_transfer(path)
    with pytest.raises(ValueError, match="defocus_angstrom"):
        transfer_from_tilts([0.0, 3.0], [1.0], [0.0, 3.0], 3.0, phase_flipped=True, dose_weighting_reduction=None,
                            voltage_kv=300, cs_mm=2.7, amplitude_contrast=0.1, pixel_size_angstrom=APIX,
                            tomogram_shape_zyx=SHAPE)  # fmt: skip
    with pytest.raises(InputError, match=r"particles.tbl.*tomogram number\(s\) \[2\]"):
        ParticleTransfers({1: model}, [1, 2], np.zeros((2, 3)), 32, APIX, source="particles.tbl")


def _cube_rotations():
    """The 24 proper rotations that map the voxel grid onto itself (exact trilinear rotation)."""
    out = []
    for perm in ([0, 1, 2], [1, 2, 0], [2, 0, 1], [1, 0, 2], [0, 2, 1], [2, 1, 0]):
        for signs in np.array(np.meshgrid([1, -1], [1, -1], [1, -1])).T.reshape(-1, 3):
            m = np.zeros((3, 3))
            m[np.arange(3), perm] = signs
            if np.isclose(np.linalg.det(m), 1.0):
                out.append(m)
    return np.array(out)


def test_ctf_weighted_average_divides_the_transfer_out():
    """Particles that carry H(R k) T(k) (two defoci, 24 poses) average back to T; the binary wedge keeps H in.

    Measured (against T on the sampled frequencies, floor 1e-4): FSC 0.999-1.000 in every shell with the
    transfer, 0.67-0.99 with the binary wedge.
    """
    rng = np.random.default_rng(0)
    n = 25  # odd: the 24 cube rotations map the box onto itself (exact trilinear rotation)
    truth = rng.standard_normal((n, n, n))
    truth_ft = np.fft.rfftn(truth)
    particles, poses, tables = [], [], []
    for defocus in (25000.0, 35000.0):
        model = _model(defocus=defocus)
        for rot in _cube_rotations():
            tilts, table, samples = transfer_table(model, CENTRE_1BASED, n, APIX)
            h = np.zeros_like(truth_ft)
            accumulate_spectrum(np.ones_like(truth_ft, dtype=np.complex64), rot, wedge_parameters([(-60, 60)])[0], 1.0,
                                h, np.zeros(truth_ft.shape), tilts, table, samples)  # fmt: skip
            aligned = np.fft.irfftn(h.real * truth_ft, s=(n, n, n), axes=(0, 1, 2))
            particles.append(rotate_volume(aligned.astype(np.float32), rot.T, np.zeros(3)))  # exact: grid rotation
            poses.append(rot)
            tables.append((tilts, table, samples))
    ranges = [(-60.0, 60.0)] * len(poses)
    weighted = accumulate_particles(particles, np.array(poses), np.zeros((len(poses), 3)), ranges, transfers=tables,
                                    log_every=0)  # fmt: skip
    binary = accumulate_particles(particles, np.array(poses), np.zeros((len(poses), 3)), ranges, log_every=0)
    measured = np.fft.irfftn(truth_ft * (weighted.weight > 0), s=(n, n, n), axes=(0, 1, 2)).astype(np.float32)  # what was sampled
    fsc = {}
    for name, sums in (("weighted", weighted), ("binary", binary)):
        average = finish_average(sums, 1, True, fmin_fraction=1e-4)[0]
        fsc[name] = fourier_shell_correlation(average, measured)["fsc"].to_numpy()[1:]
    assert fsc["weighted"].min() > 0.99
    assert fsc["binary"].min() < 0.8 and fsc["binary"].mean() < fsc["weighted"].mean() - 0.1


def test_load_particle_transfers_reads_the_tables_models(tmp_path):
    import pandas as pd

    paths = []
    for k, defocus in ((1, 25000.0), (2, 35000.0)):
        paths.append(tmp_path / f"TS_{k:02d}_transfer.json")
        write_transfer(paths[-1], _model(defocus=defocus))
    table = pd.DataFrame({"tomo": [2, 1], "x": [193.0, 193.0], "y": [193.0, 10.0], "z": [81.0, 81.0],
                          "dx": [0.0, 0.0], "dy": [0.0, 0.0], "dz": [0.0, 0.0]})  # fmt: skip
    assert load_particle_transfers(table, [], [], 32, APIX) is None
    transfers = load_particle_transfers(table, paths, [1, 2], 32, APIX)
    assert len(transfers) == 2 and len(transfers.subset(np.array([True, False]))) == 1
    np.testing.assert_allclose(transfers[0][1], transfer_table(_model(defocus=35000.0), CENTRE_1BASED, 32, APIX)[1])
    np.testing.assert_allclose(transfers[1][1], transfer_table(_model(defocus=25000.0), CENTRE_1BASED, 32, APIX)[1])


def test_transfer_at_frequencies_matches_the_kernels_lookup():
    from stasnake.kernels.accumulate import transfer_at
    from stasnake.sta.transfer import transfer_at_frequencies

    rng = np.random.default_rng(3)
    tilts, table, samples = transfer_table(_model(), (100.0, 50.0, 60.0), 32, APIX)
    k = np.concatenate([rng.uniform(-16, 16, (300, 3)), [[0.0, 5.0, 0.0], [0.0, 0.0, 0.0], [-3.0, 1.0, 4.0]]])
    expected = [transfer_at(np.eye(3), *kk, tilts, table, samples) for kk in k]
    np.testing.assert_allclose(transfer_at_frequencies(k, tilts, table, samples), expected, rtol=1e-12, atol=1e-12)
