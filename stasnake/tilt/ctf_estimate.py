"""Per-image and per-tilt-series CTF (defocus) estimation, CTFFIND4-like.

Method (after Rohou & Grigorieff 2015, doi:10.1016/j.jsb.2015.08.008, and the
periodogram averaging of IMOD ctfplotter, Xiong et al. 2009):

1. **Tiles.** Square tiles of ``tile_size`` pixels overlapping by 50 % are cut
   from the image, their mean is removed and a 2-D Hann window applied; the
   power spectra are averaged (Welch periodogram) and the square root taken
   (amplitude spectrum, half grid of ``rfft2``).
2. **Tilted images.** The defocus changes across a tilted image along the
   direction perpendicular to the tilt axis (``dF(U) = dF_tilt + U tan(t) *
   pixel``, see docs/conventions.md), which smears Thon rings. With
   ``use_zero_tilt_fov`` only tiles whose centre lies within
   ``W cos(t) / 2`` of the tilt axis are used, where ``W`` is the width of the
   image perpendicular to the axis: this strip is the part of the specimen
   that was in the field of view at 0 degrees (Dynamo tilt-series protocol).
   It is symmetric about the axis, so the mean defocus of the selected tiles is
   the defocus at the tilt axis. At least ``min_tiles`` tiles (the nearest to
   the axis) are always kept.
3. **1-D search.** The rotational average ``S(k)`` over the fitting band
   (``resolution_range_angstrom``) is modelled, for each defocus of a grid over
   ``defocus_range_angstrom`` (steps that change the phase at the highest
   frequency by 0.1 rad), as ``B(k) + A(k) CTF^2(k)`` with low-order
   polynomials B (background, degree 3) and A (envelope, degree 1) solved by
   linear least squares; the defocus with the smallest residual wins and is
   refined by a bounded scalar search.
4. **2-D refinement.** The spectrum is background-subtracted and flattened,
   ``(S(k) - B(|k|)) / A(|k|)``, and the normalised cross-correlation with
   ``CTF^2`` over the fitting band is maximised over (mean defocus, two
   astigmatism components) with Nelder-Mead. The correlation at the optimum is
   the ``score`` (CTFFIND's "cross correlation").
5. **Fit resolution.** The astigmatism-corrected rotational average (every
   pixel placed at the radius that has the same CTF phase at the mean defocus)
   minus the background is correlated with the fitted ``CTF^2`` in a window
   sliding over the rings (width: one local ring period, at least 5 samples).
   ``fit_resolution_angstrom`` is ``1/k`` at the last frequency before the
   correlation first falls below 0.3 (searching from the first CTF maximum);
   the high-resolution limit if it never does.

Defocus is Å, positive underfocus; the astigmatism angle is CTFFIND's (U axis
from the image x axis, counter-clockwise, degrees in [0, 180)); see
:mod:`stasnake.tilt.ctf`.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
import scipy.fft
from scipy import optimize

from stasnake.errors import InputError
from stasnake.tilt.ctf import electron_wavelength_angstrom

log = logging.getLogger(__name__)

FIT_CORRELATION_THRESHOLD = 0.3
_BG_DEGREE = 4


# --------------------------------------------------------------------------- tiles
def tile_centres(shape, tile_size: int, tilt_angle_deg: float = 0.0, tilt_axis_angle_deg: float = 0.0,
                 use_zero_tilt_fov: bool = True, min_tiles: int = 4) -> np.ndarray:  # fmt: skip
    """Top-left corners (row, column) of the tiles used for the spectrum.

    Parameters
    ----------
    shape : tuple of int
        Image shape (ny, nx).
    tile_size : int
        Tile side in pixels; tiles overlap by 50 %.
    tilt_angle_deg : float
        Tilt angle of the image, degrees.
    tilt_axis_angle_deg : float
        Direction of the tilt axis in the image, degrees from the image y axis,
        counter-clockwise (the SerialEM/IMOD "tilt axis angle", the ``psi`` of
        the project's .xf convention). 0 for aligned images (axis along y).
    use_zero_tilt_fov : bool
        Keep only tiles whose centre is within ``W cos(t) / 2`` of the tilt
        axis (``W``: the image width perpendicular to the axis through the
        centre).
    min_tiles : int
        Keep at least this many tiles (the nearest to the axis).

    Returns
    -------
    np.ndarray
        int64 (n, 2) corners (row, column).
    """
    ny, nx = shape
    def starts(n):  # evenly spread, overlap >= 50 %, first and last flush with the edges
        count = int(np.ceil((n - tile_size) / max(1, tile_size // 2))) + 1
        return np.unique(np.rint(np.linspace(0, n - tile_size, count)).astype(np.int64))

    rows, cols = starts(ny), starts(nx)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    corners = np.column_stack([rr.ravel(), cc.ravel()]).astype(np.int64)
    if not use_zero_tilt_fov:
        return corners
    psi = np.radians(tilt_axis_angle_deg)
    nrm = np.array([np.cos(psi), np.sin(psi)])  # (x, y) unit normal of the axis direction (-sin, cos)
    cy, cx = corners[:, 0] + tile_size / 2 - ny / 2, corners[:, 1] + tile_size / 2 - nx / 2
    dist = np.abs(cx * nrm[0] + cy * nrm[1])
    with np.errstate(divide="ignore"):
        width = min(nx / abs(nrm[0]) if abs(nrm[0]) > 1e-9 else np.inf,
                    ny / abs(nrm[1]) if abs(nrm[1]) > 1e-9 else np.inf)  # fmt: skip
    keep = dist <= 0.5 * width * abs(np.cos(np.radians(tilt_angle_deg))) + 1e-9
    if keep.sum() < min_tiles:
        keep = np.zeros(len(corners), dtype=bool)
        keep[np.argsort(dist, kind="stable")[: min(min_tiles, len(corners))]] = True
    return corners[keep]


def default_tile_size(shape, pixel_size_angstrom: float, max_defocus_angstrom: float, high_resolution_angstrom: float,
                      voltage_kv: float = 300.0) -> int:  # fmt: skip
    """Tile side (even, pixels): 6 samples per Thon ring at the highest frequency and the largest defocus.

    The ring period at frequency k is ``1 / (lambda dF k)`` (1/Å); the tile is
    the smallest even size that samples it 6 times, at least 64 (or the
    image) and at most 256 or half the smaller image side, whichever is smaller
    (so that several tiles are averaged).
    """
    lam = electron_wavelength_angstrom(voltage_kv)
    need = 6.0 * lam * max_defocus_angstrom / high_resolution_angstrom / pixel_size_angstrom
    cap = max(32, min(256, min(shape) // 2))
    return int(min(cap, max(64, 2 * int(np.ceil(need / 2)))))


def amplitude_spectrum(image: np.ndarray, tile_size: int, corners: np.ndarray) -> np.ndarray:
    """Welch-averaged amplitude spectrum of Hann-windowed tiles, shape (tile, tile // 2 + 1), rfft layout."""
    win1 = np.hanning(tile_size + 2)[1:-1]
    win = np.outer(win1, win1)
    acc = np.zeros((tile_size, tile_size // 2 + 1))
    img = np.asarray(image, dtype=np.float64)
    for start in range(0, len(corners), 32):
        block = np.stack([img[r : r + tile_size, c : c + tile_size] for r, c in corners[start : start + 32]])
        block = block - block.mean(axis=(1, 2), keepdims=True)
        acc += (np.abs(scipy.fft.rfft2(block * win, workers=-1)) ** 2).sum(axis=0)
    return np.sqrt(acc / max(len(corners), 1))


# --------------------------------------------------------------------------- model pieces
class _Problem:
    """Frequencies, band and helpers for one spectrum."""

    def __init__(self, spectrum, px, voltage_kv, cs_mm, amp, res_range):
        n = spectrum.shape[0]
        self.n, self.px = n, px
        self.lam = electron_wavelength_angstrom(voltage_kv)
        self.cs = cs_mm * 1e7
        self.voltage_kv, self.cs_mm, self.amp = voltage_kv, cs_mm, amp
        fx = np.fft.rfftfreq(n, d=px)[None, :]
        fy = np.fft.fftfreq(n, d=px)[:, None]
        self.k = np.sqrt(fx**2 + fy**2)
        self.theta = np.arctan2(np.broadcast_to(fy, self.k.shape), np.broadcast_to(fx, self.k.shape))
        self.kmin, self.kmax = 1.0 / res_range[0], 1.0 / res_range[1]
        self.band = (self.k >= self.kmin) & (self.k <= self.kmax)
        self.spectrum = spectrum
        # 1-D rotational average on rings of one Fourier pixel
        ring = np.rint(self.k * n * px).astype(np.int64)
        nr = n // 2 + 1
        ok = ring < nr
        cnt = np.bincount(ring[ok], minlength=nr)
        tot = np.bincount(ring[ok], weights=spectrum[ok], minlength=nr)
        self.k1 = np.arange(nr) / (n * px)
        self.s1 = tot / np.maximum(cnt, 1)
        self.band1 = (self.k1 >= self.kmin) & (self.k1 <= self.kmax)

    def chi(self, df, k):
        k2 = k * k
        return np.pi * self.lam * df * k2 - 0.5 * np.pi * self.cs * self.lam**3 * k2 * k2

    def ctf2_1d(self, df, k):
        c = np.sqrt(1 - self.amp**2) * np.sin(self.chi(df, k)) + self.amp * np.cos(self.chi(df, k))
        return c * c

    def _x(self, k):
        return 2 * np.clip((k - self.kmin) / (self.kmax - self.kmin), 0.0, 1.0) - 1

    def bg_basis(self, k):
        x = self._x(k)
        return np.stack([x**i for i in range(_BG_DEGREE + 1)], axis=-1)

    def fit_background(self):
        """Smooth radial background: least-squares polynomial (degree _BG_DEGREE in k) of the band's rotational average."""
        k, s = self.k1[self.band1], self.s1[self.band1]
        coef, *_ = np.linalg.lstsq(self.bg_basis(k), s, rcond=None)
        self.bg = coef
        self.sub1 = self.s1 - self.background(self.k1)

    def score_1d(self, df):
        """Normalised cross-correlation of the background-subtracted rotational average and CTF^2 over the band."""
        k = self.k1[self.band1]
        return _ncc(self.sub1[self.band1], self.ctf2_1d(df, k))

    def background(self, k):
        return self.bg_basis(k) @ self.bg

    def df_theta(self, dfm, a1, a2):
        return dfm + a1 * np.cos(2 * self.theta[self.band]) + a2 * np.sin(2 * self.theta[self.band])

    def ctf2_2d(self, dfm, a1, a2):
        return self.ctf2_1d(self.df_theta(dfm, a1, a2), self.k[self.band])


def _ncc(a, b):
    a = a - a.mean()
    b = b - b.mean()
    d = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / d) if d > 0 else 0.0


def _equiphase_radius(prob, dfm, df_local, k):
    """Radius that has, at defocus dfm, the CTF phase that k has at df_local (1/Å)."""
    chi = prob.chi(df_local, k)
    a = 0.5 * np.pi * prob.cs * prob.lam**3
    b = np.pi * prob.lam * dfm
    disc = np.maximum(b * b - 4 * a * chi, 0.0)
    x = (b - np.sqrt(disc)) / (2 * a) if a > 0 else chi / b
    return np.sqrt(np.maximum(x, 0.0))


def _fit_resolution(prob, k1, spec1, fit1, dfm):
    """Last 1/k (Å) before the sliding-window correlation of spectrum and fit drops below the threshold."""
    valid = np.isfinite(spec1) & (k1 >= prob.kmin) & (k1 <= prob.kmax)
    idx = np.flatnonzero(valid)
    if idx.size < 5:
        return float(1.0 / prob.kmax)
    corr = np.full(k1.shape, np.nan)
    dk = k1[1] - k1[0]
    for i in idx:
        # local ring period: 2 pi / (dchi/dk)
        dchi = abs(2 * np.pi * prob.lam * dfm * k1[i] - 2 * np.pi * prob.cs * prob.lam**3 * k1[i] ** 3)
        half = max(2, int(np.ceil(0.5 * (2 * np.pi / max(dchi, 1e-12)) / dk)))
        lo, hi = max(idx[0], i - half), min(idx[-1], i + half)
        if hi - lo + 1 < 5:
            continue
        corr[i] = _ncc(spec1[lo : hi + 1], fit1[lo : hi + 1])
    # start at the first CTF maximum (phase pi/2) or the band start
    chi1 = prob.chi(dfm, k1)
    start_candidates = idx[chi1[idx] >= 0.5 * np.pi]
    start = start_candidates[0] if start_candidates.size else idx[0]
    last_good = None
    for i in idx[idx >= start]:
        if np.isnan(corr[i]):
            continue
        if corr[i] < FIT_CORRELATION_THRESHOLD:
            break
        last_good = i
    if last_good is None:
        return float(1.0 / k1[start]) if k1[start] > 0 else float(1.0 / prob.kmax)
    return float(1.0 / k1[last_good])


# --------------------------------------------------------------------------- public API
def estimate_defocus(
    image: np.ndarray,
    pixel_size_angstrom: float,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    tilt_angle_deg: float = 0.0,
    tilt_axis_angle_deg: float = 0.0,
    defocus_range_angstrom: tuple[float, float] = (5000.0, 60000.0),
    resolution_range_angstrom: tuple[float, float] | None = None,
    tile_size: int | None = None,
    astigmatism: bool = True,
    use_zero_tilt_fov: bool = True,
) -> dict:
    """Estimate defocus and astigmatism of one image (see the module docstring for the method).

    Parameters
    ----------
    image : np.ndarray
        (ny, nx) image, any contrast (the power spectrum is used).
    pixel_size_angstrom : float
        Pixel size, Å.
    voltage_kv, cs_mm, amplitude_contrast : float
        Microscope: kV, mm, fraction.
    tilt_angle_deg : float
        Tilt of the image (degrees), for the zero-tilt field-of-view strip.
    tilt_axis_angle_deg : float
        Tilt-axis direction in the image, degrees from the image y axis,
        counter-clockwise (SerialEM/IMOD "tilt axis angle"; 0 for aligned
        images whose axis is along y).
    defocus_range_angstrom : (float, float)
        Searched defocus range, Å (underfocus positive).
    resolution_range_angstrom : (float, float) or None
        Fitting band (low, high resolution), Å. Default ``(30, max(5, 2.1 *
        pixel))``, the high limit just inside Nyquist.
    tile_size : int or None
        Tile side in pixels (even). Default 256, or the largest even size
        <= half the smaller image side for small images (at least 32).
    astigmatism : bool
        Fit astigmatism (else dU = dV and angle 0).
    use_zero_tilt_fov : bool
        Use only tiles in the strip around the tilt axis that was in the
        0-degree field of view (width ``W cos t``).

    Returns
    -------
    dict
        ``defocus_u_angstrom``, ``defocus_v_angstrom`` (U >= V),
        ``astigmatism_angle_deg`` (CTFFIND convention, [0, 180)), ``score``
        (normalised cross-correlation of the 2-D fit, -1..1),
        ``fit_resolution_angstrom``, ``n_tiles``, ``tile_size`` and
        ``diagnostics``: dict of 1-D arrays ``frequency_per_angstrom``,
        ``spectrum`` (background-subtracted, envelope-flattened,
        astigmatism-corrected rotational average), ``fit`` (CTF^2 at the mean
        defocus), ``fit_correlation`` (sliding-window correlation) and the
        scalars ``kmin``/``kmax`` (1/Å).
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise InputError("image", f"expected a 2-D image, got shape {img.shape}")
    px = float(pixel_size_angstrom)
    if not px > 0:
        raise InputError("pixel_size_angstrom", f"must be positive, got {pixel_size_angstrom}")
    ny, nx = img.shape
    if resolution_range_angstrom is None:
        resolution_range_angstrom = (30.0, max(5.0, 2.1 * px))
    if tile_size is None:
        tile_size = default_tile_size(img.shape, px, max(defocus_range_angstrom), resolution_range_angstrom[1], voltage_kv)
    tile_size = int(tile_size)
    if tile_size < 32 or tile_size > min(ny, nx):
        raise InputError("tile_size", f"{tile_size} does not fit an image of shape {img.shape} (need 32..min side)")
    lo_res, hi_res = (float(r) for r in resolution_range_angstrom)
    if not (lo_res > hi_res >= 2 * px):
        raise InputError("resolution_range_angstrom",
                         f"need low > high >= Nyquist ({2 * px:g} Å), got {resolution_range_angstrom}")  # fmt: skip
    dmin, dmax = (float(d) for d in defocus_range_angstrom)
    if not 0 < dmin < dmax:
        raise InputError("defocus_range_angstrom", f"need 0 < min < max, got {defocus_range_angstrom}")

    corners = tile_centres(img.shape, tile_size, tilt_angle_deg, tilt_axis_angle_deg, use_zero_tilt_fov)
    spec = amplitude_spectrum(img, tile_size, corners)
    prob = _Problem(spec, px, voltage_kv, cs_mm, amplitude_contrast, (lo_res, hi_res))

    # 1-D grid search + scalar refinement
    prob.fit_background()
    step = 0.1 / (np.pi * prob.lam * prob.kmax**2)
    grid = np.arange(dmin, dmax + step, step)
    scores = np.array([prob.score_1d(d) for d in grid])
    i0 = int(np.argmax(scores))
    lo, hi = grid[max(i0 - 1, 0)], grid[min(i0 + 1, len(grid) - 1)]
    res = optimize.minimize_scalar(lambda d: -prob.score_1d(d), bounds=(lo, hi), method="bounded",
                                   options={"xatol": 1.0})  # fmt: skip
    df1 = float(res.x)

    # 2-D refinement on the background-subtracted spectrum
    kb = prob.k[prob.band]
    flat = spec[prob.band] - prob.background(kb)

    def cost(p):
        a1, a2 = (p[1], p[2]) if astigmatism else (0.0, 0.0)
        return -_ncc(flat, prob.ctf2_2d(p[0], a1, a2))

    best = None
    starts = [(df1, 0.0, 0.0)]
    if astigmatism:
        a0 = max(0.02 * df1, 200.0)
        starts += [(df1, a0, 0.0), (df1, -a0, 0.0), (df1, 0.0, a0), (df1, 0.0, -a0)]
    for s in starts:
        simplex = np.array([s, np.add(s, (0.01 * df1 + 50, 0, 0)), np.add(s, (0, 0.01 * df1 + 50, 0)),
                            np.add(s, (0, 0, 0.01 * df1 + 50))])  # fmt: skip
        r = optimize.minimize(cost, np.asarray(s), method="Nelder-Mead",
                              options={"initial_simplex": simplex, "xatol": 1.0, "fatol": 1e-6, "maxiter": 600})  # fmt: skip
        if best is None or r.fun < best.fun:
            best = r
    dfm, a1, a2 = (float(best.x[0]), float(best.x[1]), float(best.x[2])) if astigmatism else (float(best.x[0]), 0.0, 0.0)
    half = float(np.hypot(a1, a2))
    angle = float(np.degrees(0.5 * np.arctan2(a2, a1))) % 180.0 if half > 0 else 0.0
    score = -float(best.fun)

    # diagnostics: astigmatism-corrected rotational average
    ring_k = _equiphase_radius(prob, dfm, dfm + a1 * np.cos(2 * prob.theta) + a2 * np.sin(2 * prob.theta), prob.k)
    flat_all = spec - prob.background(prob.k)
    n = prob.n
    ring = np.rint(ring_k * n * px).astype(np.int64)
    ok = (ring < n // 2 + 1) & (prob.k <= 0.5 / px)
    cnt = np.bincount(ring[ok], minlength=n // 2 + 1)
    tot = np.bincount(ring[ok], weights=flat_all[ok], minlength=n // 2 + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        spec1 = np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)
    fit1 = prob.ctf2_1d(dfm, prob.k1)
    fit_res = _fit_resolution(prob, prob.k1, spec1, fit1, dfm)
    return {
        "defocus_u_angstrom": dfm + half,
        "defocus_v_angstrom": dfm - half,
        "astigmatism_angle_deg": angle,
        "score": score,
        "fit_resolution_angstrom": fit_res,
        "n_tiles": int(len(corners)),
        "tile_size": tile_size,
        "diagnostics": {
            "frequency_per_angstrom": prob.k1, "spectrum": spec1, "fit": fit1,
            "kmin": prob.kmin, "kmax": prob.kmax,
        },  # fmt: skip
    }


def flag_outliers(mean_defocus_angstrom, outlier_fraction: float = 0.2) -> np.ndarray:
    """Boolean per tilt: ``|dF - median(dF)| > outlier_fraction * median(dF)`` (ScipionTomo CTF assistant, robust)."""
    d = np.asarray(mean_defocus_angstrom, dtype=np.float64)
    med = float(np.median(d))
    return np.abs(d - med) > outlier_fraction * abs(med)


def estimate_tilt_series_ctf(
    stack: np.ndarray,
    pixel_size_angstrom: float,
    tilt_angles_deg,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    tilt_axis_angle_deg: float = 0.0,
    defocus_range_angstrom: tuple[float, float] = (5000.0, 60000.0),
    resolution_range_angstrom: tuple[float, float] | None = None,
    tile_size: int | None = None,
    astigmatism: bool = True,
    use_zero_tilt_fov: bool = True,
    outlier_fraction: float = 0.2,
) -> pd.DataFrame:
    """Estimate the CTF of every image of a tilt series.

    Parameters
    ----------
    stack : np.ndarray
        (n, ny, nx) images in stack order (any order: raw/acquisition or sorted).
    pixel_size_angstrom : float
        Pixel size, Å.
    tilt_angles_deg : array_like
        (n,) tilt angle of each image in stack order, degrees.
    tilt_axis_angle_deg : float
        Tilt-axis direction in the images (degrees from y, counter-clockwise);
        0 for aligned stacks.
    voltage_kv, cs_mm, amplitude_contrast, defocus_range_angstrom, resolution_range_angstrom, tile_size, astigmatism, use_zero_tilt_fov
        As in :func:`estimate_defocus` (the tilt angle of each image is passed on).
    outlier_fraction : float
        A tilt is an outlier when its mean defocus differs from the series
        median by more than this fraction of the median.

    Returns
    -------
    pd.DataFrame
        One row per image in stack order: ``view`` (0-based stack index),
        tilt_angle_deg, defocus_u_angstrom, defocus_v_angstrom,
        astigmatism_angle_deg, score, fit_resolution_angstrom, outlier (bool).
    """
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise InputError("stack", f"expected (n, ny, nx), got shape {stack.shape}")
    angles = np.asarray(tilt_angles_deg, dtype=np.float64).ravel()
    if angles.size != stack.shape[0]:
        raise InputError("tilt_angles_deg", f"{angles.size} angles for {stack.shape[0]} images")
    rows = []
    for i in range(stack.shape[0]):
        t0 = time.perf_counter()
        r = estimate_defocus(stack[i], pixel_size_angstrom, voltage_kv, cs_mm, amplitude_contrast, float(angles[i]),
                             tilt_axis_angle_deg, defocus_range_angstrom, resolution_range_angstrom, tile_size,
                             astigmatism, use_zero_tilt_fov)  # fmt: skip
        log.info("CTF view %d/%d tilt %.1f: dU %.0f dV %.0f Å angle %.1f score %.3f fit %.1f Å (%d tiles, %.2f s)",
                 i + 1, stack.shape[0], angles[i], r["defocus_u_angstrom"], r["defocus_v_angstrom"],
                 r["astigmatism_angle_deg"], r["score"], r["fit_resolution_angstrom"], r["n_tiles"],
                 time.perf_counter() - t0)  # fmt: skip
        rows.append({"view": i, "tilt_angle_deg": float(angles[i]),
                     **{k: r[k] for k in ("defocus_u_angstrom", "defocus_v_angstrom", "astigmatism_angle_deg",
                                          "score", "fit_resolution_angstrom")}})  # fmt: skip
    table = pd.DataFrame(rows)
    mean_df = 0.5 * (table["defocus_u_angstrom"] + table["defocus_v_angstrom"])
    table["outlier"] = flag_outliers(mean_df.to_numpy(), outlier_fraction)
    return table
