"""CC cleaning: Gaussian-mixture threshold and latitude-normalised CC filter (synthetic truth)."""

from __future__ import annotations

import numpy as np
import pytest

from stasnake.errors import InputError
from stasnake.geometry.euler import matrix_to_dynamo_euler
from stasnake.io.dynamo_table import new_table
from stasnake.sta.cleaning import (
    apply_cc_threshold,
    fit_gmm_1d,
    gmm_cc_threshold,
    gmm_cc_thresholds,
    latitude_cc_filter,
    latitude_deg,
    latitude_normalised_cc,
    plot_cc_threshold,
    plot_latitude_cc,
)


def _bimodal(rng, n_bad=300, n_good=1200):
    bad = rng.normal(0.10, 0.02, n_bad)
    good = rng.normal(0.25, 0.03, n_good)
    return np.concatenate([bad, good]), np.r_[np.ones(n_bad, bool), np.zeros(n_good, bool)]


def test_em_recovers_mixture_parameters():
    rng = np.random.default_rng(0)
    cc, _ = _bimodal(rng)
    means, sigmas, weights, _ = fit_gmm_1d(cc)
    print("means", means, "sigmas", sigmas, "weights", weights)
    np.testing.assert_allclose(means, [0.10, 0.25], atol=0.005)
    np.testing.assert_allclose(sigmas, [0.02, 0.03], atol=0.004)
    np.testing.assert_allclose(weights, [0.2, 0.8], atol=0.03)


def test_gmm_threshold_at_density_minimum_plus_offset():
    rng = np.random.default_rng(1)
    cc, bad = _bimodal(rng)
    res = gmm_cc_threshold(cc, offset=0.01)
    # true mixture minimum between 0.10 and 0.25 for these parameters
    x = np.linspace(0.10, 0.25, 100001)
    dens = 0.2 / 0.02 * np.exp(-0.5 * ((x - 0.10) / 0.02) ** 2) + 0.8 / 0.03 * np.exp(
        -0.5 * ((x - 0.25) / 0.03) ** 2
    )
    true_min = x[np.argmin(dens)]
    removed = cc < res.threshold
    recall = (removed & bad).sum() / bad.sum()
    precision = (removed & bad).sum() / max(removed.sum(), 1)
    print(f"minimum {res.minimum:.4f} (true {true_min:.4f}) threshold {res.threshold:.4f}")
    print(f"recall {recall:.3f} precision {precision:.3f}")
    assert res.bimodal and res.reason == ""
    assert abs(res.minimum - true_min) < 0.01
    assert res.threshold == pytest.approx(res.minimum + 0.01)
    assert recall > 0.97 and precision > 0.85


def test_gmm_unimodal_falls_back_to_keeping_all():
    rng = np.random.default_rng(2)
    res = gmm_cc_threshold(rng.normal(0.25, 0.03, 1000))
    print(res.reason)
    assert not res.bimodal and res.threshold == -np.inf and "unimodal" in res.reason
    few = gmm_cc_threshold([0.1, 0.2, 0.3])
    assert not few.bimodal and few.threshold == -np.inf and "only 3" in few.reason
    flat = gmm_cc_threshold(np.full(50, 0.2))
    assert flat.threshold == -np.inf and "equal" in flat.reason


def test_apply_thresholds_per_tomogram(tmp_path):
    rng = np.random.default_rng(3)
    cc1, bad1 = _bimodal(rng)
    cc2, bad2 = _bimodal(rng)
    cc2 = cc2 + 0.1  # a tomogram with higher CC overall (other defocus)
    table = new_table(cc1.size + cc2.size)
    table["tag"] = np.arange(1, len(table) + 1)
    table["cc"] = np.r_[cc1, cc2]
    table["tomo"] = np.r_[np.ones(cc1.size, int), np.full(cc2.size, 2)]
    thresholds = gmm_cc_thresholds(table)
    assert set(thresholds) == {1, 2}
    assert thresholds[2].threshold - thresholds[1].threshold == pytest.approx(0.1, abs=0.01)
    kept = apply_cc_threshold(table, thresholds)
    bad = np.r_[bad1, bad2]
    kept_bad = np.isin(kept["tag"], table["tag"][bad]).sum()
    print("kept", len(kept), "of", len(table), "bad kept", kept_bad)
    assert kept_bad < 0.03 * bad.sum()
    assert len(kept) > 0.9 * (~bad).sum()
    with pytest.raises(InputError, match="tomogram"):
        apply_cc_threshold(table, {1: 0.2})
    plot_cc_threshold(cc1, thresholds[1], tmp_path / "gmm.png", "tomo 1")
    plot_cc_threshold(
        np.full(5, 0.2), gmm_cc_threshold(np.full(5, 0.2)), tmp_path / "none.png", "none"
    )
    assert (tmp_path / "gmm.png").stat().st_size > 1000


def _vlp_table(rng, n=3000, bad_fraction=0.1, tomo=1):
    """Particles on a sphere with outward normals; CC depends on latitude (poles lower)."""
    normals = rng.normal(size=(n, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    mats = np.empty((n, 3, 3))
    for i, z in enumerate(normals):
        x = np.cross([0.0, 0.0, 1.0], z) if abs(z[2]) < 0.999 else np.array([1.0, 0.0, 0.0])
        x /= np.linalg.norm(x)
        mats[i] = np.stack([x, np.cross(z, x), z], axis=1)
    lat_true = np.degrees(np.arcsin(normals[:, 2]))
    phi = np.radians(lat_true)
    trend = 0.20 + 0.08 * np.cos(phi) ** 2 + 0.01 * np.sin(phi)  # equator 0.28, poles ~0.20
    bad = rng.random(n) < bad_fraction
    cc = trend + rng.normal(0.0, 0.015, n) - 0.06 * bad
    table = new_table(n)
    table["tag"] = np.arange(1, n + 1)
    table[["tdrot", "tilt", "narot"]] = matrix_to_dynamo_euler(mats)
    table["cc"] = cc
    table["tomo"] = tomo
    return table, lat_true, bad


def test_latitude_from_euler_angles():
    rng = np.random.default_rng(4)
    table, lat_true, _ = _vlp_table(rng, n=200)
    lat = latitude_deg(table)
    np.testing.assert_allclose(lat, lat_true, atol=1e-6)
    np.testing.assert_allclose(lat, 90.0 - table["tilt"].to_numpy(), atol=1e-6)


def test_latitude_filter_removes_bad_without_latitude_bias(tmp_path):
    rng = np.random.default_rng(5)
    table, lat, bad = _vlp_table(rng)
    kept, report = latitude_cc_filter(table, n_sd=1.0)
    removed = ~np.isin(table["tag"], kept["tag"])
    recall = (removed & bad).sum() / bad.sum()
    precision = (removed & bad).sum() / removed.sum()
    # naive cut on raw CC: mean - 1 SD
    raw = table["cc"].to_numpy()
    raw_removed = raw < raw.mean() - raw.std(ddof=1)
    raw_recall = (raw_removed & bad).sum() / bad.sum()
    raw_precision = (raw_removed & bad).sum() / raw_removed.sum()
    polar = np.abs(lat) > 60
    equator = np.abs(lat) < 30
    good = ~bad

    def good_loss(rem, band):
        return (rem & good & band).sum() / (good & band).sum()

    print(report.to_string())
    print(
        f"normalised: recall {recall:.3f} precision {precision:.3f} "
        f"good removed polar {good_loss(removed, polar):.3f} equator {good_loss(removed, equator):.3f}"
    )
    print(f"raw cut:    recall {raw_recall:.3f} precision {raw_precision:.3f} "
          f"good removed polar {good_loss(raw_removed, polar):.3f} equator {good_loss(raw_removed, equator):.3f}")  # fmt: skip
    assert recall > 0.9 and precision > 0.5
    assert abs(good_loss(removed, polar) - good_loss(removed, equator)) < 0.05
    assert good_loss(raw_removed, polar) > 0.3 and good_loss(raw_removed, equator) < 0.05
    assert recall > raw_recall and precision > raw_precision
    assert report.loc[0, "n"] == len(table) and report.loc[0, "removed"] == removed.sum()
    assert report.loc[0, "a2"] > 0.03  # the cos(2 phi) pole/equator term (0.04 true)
    norm = latitude_normalised_cc(table)
    assert abs(norm.mean()) < 1e-9
    plot_latitude_cc(table, tmp_path / "lat.png", "tomo 1")
    assert (tmp_path / "lat.png").stat().st_size > 1000


def test_latitude_filter_groups_by_tomogram():
    rng = np.random.default_rng(6)
    t1, _, bad1 = _vlp_table(rng, n=1000, tomo=1)
    t2, _, bad2 = _vlp_table(rng, n=1000, tomo=2)
    t2["cc"] += 0.15
    t2["tag"] += 1000
    import pandas as pd

    table = pd.concat([t1, t2], ignore_index=True)
    kept, report = latitude_cc_filter(table)
    print(report[["tomo", "n", "removed", "a0", "cut"]].to_string())
    assert list(report["tomo"]) == [1, 2]
    frac = kept.groupby("tomo").size() / table.groupby("tomo").size()
    assert abs(frac[1] - frac[2]) < 0.05  # a global cut would empty tomogram 1
    with pytest.raises(InputError, match="cc"):
        latitude_cc_filter(table.drop(columns="cc"))
