"""Detection of dark and blank views in a tilt series (reported, never dropped here).

Dark views
----------
Through a slab of ice of thickness T the unscattered (zero-loss) intensity at
tilt t falls as ``I(t) = I0 exp(-T / (mfp cos t))``, so ``log(mean)`` is linear
in ``1 / cos t``. The line is fitted robustly (Theil-Sen start, then
least squares on the views within 3.5 robust sigmas, repeated), so that dark
views do not pull the fit. A view is **dark** when its mean is below
``dark_fraction`` (default 0.2) of the fitted expectation at its tilt; the
robust z-score ``(log mean - fit) / sigma`` (sigma from the MAD of the
inliers' residuals, at least ``min_sigma_log``) is reported for judging
milder cases. Without an energy filter the slope is smaller, which the fit
absorbs.

Blank views
-----------
A view is **blank** when it holds no structure: a constant image (std at most
1e-6 of its mean magnitude), or one whose spatial structure is
indistinguishable from white (shot) noise. The test compares the variance of
the image binned ``bin_px`` x ``bin_px`` with the pixel noise variance,
estimated from differences of neighbouring pixels (``var(x[i+1] - x[i]) / 2``):
white noise gives ``structure = var(binned) * bin² / noise_var - 1 ≈ 0``
(standard error ``sqrt(2 / n_blocks)``), while any real projection (gold,
membranes, ice thickness variation, CTF-filtered density) is correlated over
several pixels and gives a clearly positive value. The ratio
``var / mean`` (1 for pure Poisson counts with unit gain) is reported as
``shot_noise_ratio``.

Policy
------
:func:`detect_dark_views` only reports: it never drops a view. The import
step writes the table; the user decides, or the configuration asks to exclude
flagged views. The only error is a series in which every view is dark or
blank, which cannot be processed.
"""

from __future__ import annotations

from os import PathLike

import numpy as np
import pandas as pd
from scipy import stats

from stasnake.errors import InputError


def _binned(image: np.ndarray, bin_px: int) -> np.ndarray:
    ny, nx = (image.shape[0] // bin_px) * bin_px, (image.shape[1] // bin_px) * bin_px
    return image[:ny, :nx].reshape(ny // bin_px, bin_px, nx // bin_px, bin_px).mean(axis=(1, 3))


def structure_index(image: np.ndarray, bin_px: int = 4) -> float:
    """Excess variance of the binned image over white noise, ``var(binned) bin² / noise_var - 1``.

    About 0 (± sqrt(2 / n_blocks)) for white noise; positive for structured images;
    0 for a constant image.
    """
    img = np.asarray(image, dtype=np.float64)
    d = np.diff(img, axis=1)
    noise_var = 0.5 * float(np.var(d))
    if noise_var <= 0:
        return 0.0
    return float(np.var(_binned(img, bin_px)) * bin_px**2 / noise_var - 1.0)


def _fit_log_mean(inv_cos: np.ndarray, log_mean: np.ndarray, usable: np.ndarray, clip_sigmas: float, min_sigma: float):
    """Robust line ``log_mean = a + b * inv_cos`` on the usable views: (a, b, sigma, inliers)."""
    x, y = inv_cos[usable], log_mean[usable]
    if x.size >= 3 and np.ptp(x) > 1e-9:
        b, a, *_ = stats.theilslopes(y, x)
    else:
        a, b = float(np.median(y)), 0.0
    inl = np.ones(x.size, dtype=bool)
    sigma = min_sigma
    for _ in range(5):
        r = y - (a + b * x)
        sigma = max(1.4826 * float(np.median(np.abs(r[inl] - np.median(r[inl])))), min_sigma)
        new = np.abs(r) <= clip_sigmas * sigma
        if new.sum() < 2 or np.array_equal(new, inl):
            break
        inl = new
        if np.ptp(x[inl]) > 1e-9 and inl.sum() >= 3:
            b, a = np.polyfit(x[inl], y[inl], 1)
        else:
            a, b = float(np.median(y[inl])), 0.0
    inliers = np.zeros(inv_cos.size, dtype=bool)
    inliers[np.flatnonzero(usable)[inl]] = True
    return float(a), float(b), sigma, inliers


def detect_dark_views(
    stack: np.ndarray,
    tilt_angles_deg,
    source: str | PathLike = "tilt series",
    dark_fraction: float = 0.2,
    structure_min: float | None = None,
    bin_px: int = 4,
    clip_sigmas: float = 3.5,
    min_sigma_log: float = 0.02,
    expected_counts_per_pixel: float | None = None,
) -> pd.DataFrame:
    """Flag dark and blank views of a tilt series (see the module notes).

    Parameters
    ----------
    stack : np.ndarray
        (n, ny, nx) images in counts (not normalised), any order.
    tilt_angles_deg : array_like
        (n,) tilt angle of each image, degrees, same order as ``stack``.
    source : str or PathLike
        The stack file, named in errors.
    dark_fraction : float
        A view is dark when ``mean < dark_fraction * expected_mean``.
    structure_min : float or None
        A view is blank when its structure index is below this; default
        ``max(0.05, 6 sqrt(2 / n_blocks))`` with ``n_blocks`` the number of
        ``bin_px`` blocks (6 standard errors of white noise).
    bin_px : int
        Block size of the structure index, pixels.
    clip_sigmas : float
        Views beyond this many robust sigmas are left out of the fit.
    min_sigma_log : float
        Floor of the robust sigma of ``log(mean)`` (keeps z-scores sane on
        noise-free data).
    expected_counts_per_pixel : float or None
        Optional absolute reference: the dose per tilt times the pixel area
        (e/px) when the stack is in electrons per pixel. A view is then also
        dark when its mean is below ``dark_fraction`` of
        ``expected_counts_per_pixel * exp(slope / cos t)``, which catches a
        series that is dark as a whole (the relative fit cannot). Leave None
        for stacks in other units (scaled counts, integrating cameras).

    Returns
    -------
    pd.DataFrame
        One row per view, in input order: ``view`` (0-based), ``tilt_angle_deg``,
        ``mean``, ``std``, ``expected_mean`` (cos-law fit), ``mean_ratio``
        (mean / expected), ``z_score`` (robust, log scale), ``shot_noise_ratio``
        (var / mean), ``structure``, ``fit_inlier``, ``dark``, ``blank``,
        ``flagged`` (dark or blank). ``attrs`` hold the fit: ``log_i0``,
        ``slope`` (= -T / mfp, dimensionless), ``sigma_log``.

    Raises
    ------
    InputError
        When the tilt angles do not match the stack, or every view is dark or blank.
    """
    stack = np.asarray(stack)
    angles = np.asarray(tilt_angles_deg, dtype=np.float64).ravel()
    if stack.ndim != 3:
        raise InputError(source, f"expected a stack of images (n, ny, nx), got shape {stack.shape}")
    n = stack.shape[0]
    if angles.size != n:
        raise InputError(source, f"{n} views but {angles.size} tilt angles")
    if np.any(np.abs(angles) >= 89.0):
        raise InputError(source, f"tilt angles must be within ±89°, got {angles.min():g}..{angles.max():g}")
    means = np.array([float(np.mean(v, dtype=np.float64)) for v in stack])
    stds = np.array([float(np.std(v, dtype=np.float64)) for v in stack])
    constant = stds <= 1e-6 * np.maximum(np.abs(means), 1e-30)
    structure = np.array([structure_index(v, bin_px) for v in stack])
    n_blocks = (stack.shape[1] // bin_px) * (stack.shape[2] // bin_px)
    if structure_min is None:
        structure_min = max(0.05, 6.0 * np.sqrt(2.0 / max(n_blocks, 1)))
    blank = constant | (structure < structure_min)

    inv_cos = 1.0 / np.cos(np.radians(angles))
    positive = means > 0
    usable = positive & ~blank
    if usable.sum() == 0:
        usable = positive
    expected = np.full(n, np.nan)
    z = np.full(n, np.nan)
    inliers = np.zeros(n, dtype=bool)
    a = b = sigma = np.nan
    if usable.any():
        log_mean = np.log(np.where(positive, means, 1.0))
        a, b, sigma, inliers = _fit_log_mean(inv_cos, log_mean, usable, clip_sigmas, min_sigma_log)
        expected = np.exp(a + b * inv_cos)
        z = np.where(positive, (log_mean - (a + b * inv_cos)) / sigma, -np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = means / expected
        shot = stds**2 / means
    dark = ~positive | (ratio < dark_fraction)
    if expected_counts_per_pixel is not None and np.isfinite(b):
        dark |= means < dark_fraction * float(expected_counts_per_pixel) * np.exp(min(b, 0.0) * inv_cos)
    table = pd.DataFrame({
        "view": np.arange(n), "tilt_angle_deg": angles, "mean": means, "std": stds,
        "expected_mean": expected, "mean_ratio": ratio, "z_score": z, "shot_noise_ratio": shot,
        "structure": structure, "fit_inlier": inliers, "dark": dark, "blank": blank, "flagged": dark | blank,
    })  # fmt: skip
    table.attrs.update({"log_i0": a, "slope": b, "sigma_log": sigma})
    if table["flagged"].all():
        raise InputError(
            source,
            f"all {n} views are dark or blank ({int(dark.sum())} dark, {int(blank.sum())} without structure); "
            "check the stack (beam blanked, wrong file, or already normalised)",
        )
    return table
