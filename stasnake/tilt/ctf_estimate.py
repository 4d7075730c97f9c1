"""Per-image and per-tilt-series CTF (defocus) estimation, CTFFIND4-like, with a joint tilt-series fit.

Method (after Rohou & Grigorieff 2015, doi:10.1016/j.jsb.2015.08.008, the
periodogram averaging of IMOD ctfplotter, Xiong et al. 2009, and the
tilt-series fits of ctffind's tilt mode / Warp):

1. **Periodogram.** Square tiles of ``tile_size`` pixels overlapping by 50 %
   are cut from the image, their mean removed and a 2-D Hann window applied;
   their power spectra are averaged (Welch periodogram, half grid of
   ``rfft2``).
2. **Tilted images.** The defocus changes across a tilted image
   perpendicular to the tilt axis (``dF(U) = dF_tilt + U tan(t) * pixel``,
   docs/conventions.md). With ``use_zero_tilt_fov`` only tiles whose centre
   lies within ``W cos(t) / 2`` of the tilt axis are used (``W``: the image
   width perpendicular to the axis): the part of the specimen that was in the
   field of view at 0 degrees (Dynamo protocol). The strip is symmetric about
   the axis, so its mean defocus is the defocus at the axis. Each tile's
   defocus offset ``U tan(t) * pixel`` (U of its centre) is known; the model
   spectrum is the average of ``CTF^2`` over the offsets (five quantiles), so
   the Thon rings smeared by the gradient are modelled, not fitted as a
   different defocus.
3. **Profile.** The band (``resolution_range_angstrom``) is reduced to a 1-D
   equiphase average: every Fourier pixel goes to the radius that has, at the
   mean defocus, its CTF phase under the trial astigmatism (rings of one
   Fourier pixel, linear binning). Without astigmatism this is the
   rotational average.
4. **Local normalisation (background and envelope).** Spectrum and model are
   compared in windows of one Thon-ring period, ``|chi - chi_j| <= pi/2``
   around each sample (``chi`` the CTF phase at the trial defocus): each is
   reduced to its deviation from the window mean divided by the window
   standard deviation (the data's floored at its median over the band). This
   removes any background and envelope that vary slowly on the scale of one
   ring, however steep (the low-resolution lobe of large specimens and gold
   beads), while the ring positions remain. Samples whose window leaves the
   band are not used.
5. **Likelihood.** With ``r`` the correlation of the normalised data and
   model, ``log L = -(n / 2) log(1 - r^2)`` (``r`` clipped at 0), the profile
   log-likelihood of a linear fit of one by the other. 1-D (defocus search):
   ``r`` over the profile, ``n`` half its samples in the band (neighbouring
   samples of a Hann-windowed periodogram are correlated). 2-D (defocus and
   astigmatism): ``r`` over the band's pixels, each normalised by the
   window statistics of its equiphase radius, ``n`` a quarter of them.
   Single images: grid search of the 1-D ``log L`` over
   ``defocus_range_angstrom`` (steps that change the phase at the band limit
   by 0.05 rad) and bounded scalar refinement, then Nelder-Mead of the 2-D
   ``log L`` over (mean defocus, two astigmatism components) from five starts.
6. **Tilt series (joint fit).** The series defocus ``D`` maximises the sum of
   all tilts' 1-D ``log L`` curves (the mode of the pooled evidence). Each
   tilt's defocus then maximises ``log L_i(dF) + log p(dF)`` with a Cauchy prior
   ``log p = -log(1 + ((dF - D) / (f D))^2)``, ``f = defocus_prior_fraction``
   (5 %: the expected tilt-to-tilt scatter of the focus). Near ``D`` it
   steadies tilts whose rings are faint; being heavy-tailed it costs a tilt
   whose own rings clearly sit elsewhere only a few log units, so such a tilt
   keeps its own defocus (and is flagged, see below). The series astigmatism
   maximises the summed 2-D ``log L`` of the 15 least tilted images at their
   defocus; each tilt's (defocus, astigmatism) is then refined on its 2-D
   ``log L`` plus the defocus prior and a Gaussian prior of width
   ``astigmatism_prior_angstrom`` around the series astigmatism. Each tilt's
   unconstrained 1-D estimate is reported too (``defocus_independent_angstrom``).
7. **Score and fit resolution.** ``score`` is the 2-D correlation ``r`` at the
   optimum (CTFFIND's cross correlation; about 0 for a flat spectrum).
   ``fit_resolution_angstrom`` is ``1/k`` at the last frequency before the
   correlation of the normalised profile and model in a window of one ring
   period (at least 5 samples) first falls below 0.3, searching from the
   first CTF maximum; the band limit if it never does.

Outliers: a tilt is flagged when its defocus, or its unconstrained estimate,
differs from the series median by more than ``outlier_fraction`` (20 %,
ScipionTomo's CTF assistant). Defocus is Å, positive underfocus; the
astigmatism angle is CTFFIND's (U axis from the image x axis,
counter-clockwise, degrees in [0, 180)); see :mod:`stasnake.tilt.ctf`.
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
_GRID_PHASE_STEP_RAD = 0.05
_N_OFFSETS = 5
_N_ASTIG_TILTS = 15  # the series astigmatism is fitted on this many least tilted images


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
    dist = np.abs(tile_axis_distance_px(corners, shape, tile_size, tilt_axis_angle_deg))
    psi = np.radians(tilt_axis_angle_deg)
    nrm = np.array([np.cos(psi), np.sin(psi)])  # (x, y) unit normal of the axis direction (-sin, cos)
    with np.errstate(divide="ignore"):
        width = min(nx / abs(nrm[0]) if abs(nrm[0]) > 1e-9 else np.inf,
                    ny / abs(nrm[1]) if abs(nrm[1]) > 1e-9 else np.inf)  # fmt: skip
    keep = dist <= 0.5 * width * abs(np.cos(np.radians(tilt_angle_deg))) + 1e-9
    if keep.sum() < min_tiles:
        keep = np.zeros(len(corners), dtype=bool)
        keep[np.argsort(dist, kind="stable")[: min(min_tiles, len(corners))]] = True
    return corners[keep]


def tile_axis_distance_px(corners, shape, tile_size: int, tilt_axis_angle_deg: float = 0.0) -> np.ndarray:
    """Signed distance U (pixels) of each tile centre from the tilt axis through the image centre.

    ``U = x cos(psi) + y sin(psi)`` with (x, y) the tile centre about the image
    centre and ``psi`` the tilt-axis angle: the aligned-frame coordinate
    perpendicular to the axis (``A = R(-psi)`` of the .xf convention), so the
    tile's mid-plane defocus is ``dF_tilt + U tan(t) * pixel``. Shape (n,).
    """
    corners = np.asarray(corners, dtype=np.float64).reshape(-1, 2)
    ny, nx = shape
    cy = corners[:, 0] + tile_size / 2 - ny / 2
    cx = corners[:, 1] + tile_size / 2 - nx / 2
    psi = np.radians(tilt_axis_angle_deg)
    return cx * np.cos(psi) + cy * np.sin(psi)


def default_tile_size(shape, pixel_size_angstrom: float, max_defocus_angstrom: float, high_resolution_angstrom: float,
                      voltage_kv: float = 300.0) -> int:  # fmt: skip
    """Tile side (even, pixels): 6 samples per Thon ring at the highest frequency and the largest defocus.

    The ring period at frequency k is ``1 / (lambda dF k)`` (1/Å); the tile is
    the smallest even size that samples it 6 times, at least 64 (or the
    image) and at most 512 (CTFFIND's default box) or half the smaller image
    side, whichever is smaller (so that several tiles are averaged).
    """
    lam = electron_wavelength_angstrom(voltage_kv)
    need = 6.0 * lam * max_defocus_angstrom / high_resolution_angstrom / pixel_size_angstrom
    cap = max(32, min(512, min(shape) // 2))
    return int(min(cap, max(64, 2 * int(np.ceil(need / 2)))))


def power_spectrum(image: np.ndarray, tile_size: int, corners: np.ndarray) -> np.ndarray:
    """Welch-averaged power spectrum of Hann-windowed tiles, shape (tile, tile // 2 + 1), rfft layout."""
    win1 = np.hanning(tile_size + 2)[1:-1]
    win = np.outer(win1, win1)
    acc = np.zeros((tile_size, tile_size // 2 + 1))
    img = np.asarray(image, dtype=np.float64)
    for start in range(0, len(corners), 32):
        block = np.stack([img[r : r + tile_size, c : c + tile_size] for r, c in corners[start : start + 32]])
        block = block - block.mean(axis=(1, 2), keepdims=True)
        acc += (np.abs(scipy.fft.rfft2(block * win, workers=-1)) ** 2).sum(axis=0)
    return acc / max(len(corners), 1)


# --------------------------------------------------------------------------- local normalisation
def _window_stats(phase_periods, values):
    """Mean and standard deviation of ``values`` over ``|phase - phase_j| <= 1/2`` (one CTF^2 period), and counts."""
    lo = np.searchsorted(phase_periods, phase_periods - 0.5, side="left")
    hi = np.searchsorted(phase_periods, phase_periods + 0.5, side="right")
    c1 = np.concatenate([[0.0], np.cumsum(values)])
    c2 = np.concatenate([[0.0], np.cumsum(values * values)])
    n = hi - lo
    mean = (c1[hi] - c1[lo]) / n
    std = np.sqrt(np.maximum((c2[hi] - c2[lo]) / n - mean * mean, 0.0))
    return mean, std, n


def _normalised_pair(phase_periods, data, model):
    """Locally normalised data and model, and the mask of samples whose window lies inside the band."""
    md, sd, n = _window_stats(phase_periods, data)
    mm, sm, _ = _window_stats(phase_periods, model)
    valid = (n >= 3) & (phase_periods - 0.5 >= phase_periods[0]) & (phase_periods + 0.5 <= phase_periods[-1])
    if valid.sum() < 5:
        return None, None, valid
    floor = np.median(sd[valid])
    dn = (data - md) / np.maximum(sd, floor if floor > 0 else 1e-30)
    mn = (model - mm) / np.maximum(sm, 1e-6)
    return dn, mn, valid


def _ncc(a, b):
    a = a - a.mean()
    b = b - b.mean()
    d = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / d) if d > 0 else 0.0


# --------------------------------------------------------------------------- fitter of one spectrum
class _SpectrumFit:
    """One image's periodogram, its band and the likelihood of CTF parameters."""

    def __init__(self, power, px, voltage_kv, cs_mm, amp, res_range, offsets_angstrom):
        n = power.shape[0]
        self.n, self.px, self.amp = n, px, amp
        self.lam = electron_wavelength_angstrom(voltage_kv)
        self.cs = cs_mm * 1e7
        self.kmin, self.kmax = 1.0 / res_range[0], 1.0 / res_range[1]
        fx = np.fft.rfftfreq(n, d=px)[None, :]
        fy = np.fft.fftfreq(n, d=px)[:, None]
        k = np.sqrt(fx**2 + fy**2)
        theta = np.arctan2(np.broadcast_to(fy, k.shape), np.broadcast_to(fx, k.shape))
        # pixels a little beyond the band, so that the band's edge rings are complete under astigmatism
        dk = 1.0 / (n * px)
        sel = (k >= self.kmin - 3 * dk) & (k <= min(self.kmax + 3 * dk, 0.5 / px))
        self.kp, self.thp, self.pp = k[sel], theta[sel], power[sel]
        self.c2t, self.s2t = np.cos(2 * self.thp), np.sin(2 * self.thp)
        self.nr = n // 2 + 1
        self.k1 = np.arange(self.nr) * dk
        self.band1 = (self.k1 >= self.kmin) & (self.k1 <= self.kmax)
        self.kb1 = self.k1[self.band1]
        self.n_eff = 0.5 * self.band1.sum()
        self.n_eff_2d = 0.25 * np.count_nonzero((self.kp >= self.kmin) & (self.kp <= self.kmax))
        off = np.asarray(offsets_angstrom, dtype=np.float64).ravel()
        if off.size == 0 or np.ptp(off) < 1.0:
            self.offsets = np.array([float(off.mean()) if off.size else 0.0])
        else:
            self.offsets = np.quantile(off, (np.arange(_N_OFFSETS) + 0.5) / _N_OFFSETS)
        self.fac_p = self.offset_factor(self.kp)
        self.fac_b1 = self.offset_factor(self.kb1)
        self.profile0 = self.profile(0.0, 0.0, 0.0)

    # -- CTF pieces
    def chi(self, df, k):
        k2 = k * k
        return np.pi * self.lam * df * k2 - 0.5 * np.pi * self.cs * self.lam**3 * k2 * k2

    def offset_factor(self, k):
        """``mean_o exp(2 i pi lambda o k^2)`` over the tile defocus offsets o (complex, shape of k)."""
        if len(self.offsets) == 1 and self.offsets[0] == 0.0:
            return np.ones(np.shape(k), dtype=np.complex128)
        ph = 2 * np.pi * self.lam * np.multiply.outer(self.offsets, np.asarray(k) ** 2)
        return np.exp(1j * ph).mean(axis=0)

    def ctf2(self, df, k, factor=None):
        """CTF^2 averaged over the tile defocus offsets (df scalar or broadcastable to k).

        ``CTF^2 = sin^2(chi + alpha) = (1 - cos(2 chi + 2 alpha)) / 2`` with
        ``alpha = arcsin(A)``; an offset o adds ``pi lambda o k^2`` to chi, so
        the average over offsets is ``(1 - Re(F exp(i (2 chi + 2 alpha)))) / 2``
        with ``F`` = :meth:`offset_factor` (passed in when precomputed).
        """
        f = self.offset_factor(k) if factor is None else factor
        arg = 2 * self.chi(df, k) + 2 * np.arcsin(self.amp)
        return 0.5 - 0.5 * (f.real * np.cos(arg) - f.imag * np.sin(arg))

    def equiphase_radius(self, dfm, df_local, k):
        """Radius that has, at defocus dfm, the CTF phase that k has at df_local (1/Å)."""
        chi = self.chi(df_local, k)
        a = 0.5 * np.pi * self.cs * self.lam**3
        b = np.pi * self.lam * dfm
        disc = np.maximum(b * b - 4 * a * chi, 0.0)
        x = (b - np.sqrt(disc)) / (2 * a) if a > 0 else chi / b
        return np.sqrt(np.maximum(x, 0.0))

    # -- profile and likelihood
    def _ring_coordinates(self, dfm, a1, a2):
        """Pixel positions on the ring grid (equiphase radius in Fourier pixels): lower ring, weight, in-grid mask."""
        if a1 == 0.0 and a2 == 0.0:
            r = self.kp * (self.n * self.px)
        else:
            dfl = dfm + a1 * self.c2t + a2 * self.s2t
            r = self.equiphase_radius(dfm, dfl, self.kp) * (self.n * self.px)
        i0 = np.floor(r).astype(np.int64)
        ok = (i0 >= 0) & (i0 + 1 < self.nr)
        return np.where(ok, i0, 0), r - i0, ok

    def _binned(self, i0, w, ok):
        i0, w, p = i0[ok], w[ok], self.pp[ok]
        tot = np.bincount(i0, (1 - w) * p, self.nr) + np.bincount(i0 + 1, w * p, self.nr)
        cnt = np.bincount(i0, 1 - w, self.nr) + np.bincount(i0 + 1, w, self.nr)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 1e-9, tot / cnt, np.nan)

    def profile(self, dfm, a1, a2):
        """Equiphase average of the power over rings of one Fourier pixel (shape (nr,); NaN where empty)."""
        return self._binned(*self._ring_coordinates(dfm, a1, a2))

    def correlation(self, dfm, prof):
        """Correlation r of the locally normalised band profile and model at mean defocus dfm."""
        data = prof[self.band1]
        if not np.all(np.isfinite(data)):
            return 0.0
        phase = self.chi(dfm, self.kb1) / np.pi
        if np.any(np.diff(phase) <= 0):
            return 0.0
        dn, mn, valid = _normalised_pair(phase, data, self.ctf2(dfm, self.kb1, self.fac_b1))
        if dn is None:
            return 0.0
        return _ncc(dn[valid], mn[valid])

    def loglik_from_r(self, r):
        r = min(max(r, 0.0), 0.999)
        return -0.5 * self.n_eff * np.log1p(-r * r)

    def loglik(self, dfm, a1=0.0, a2=0.0):
        prof = self.profile0 if (a1 == 0.0 and a2 == 0.0) else self.profile(dfm, a1, a2)
        return self.loglik_from_r(self.correlation(dfm, prof))

    def loglik_curve(self, grid):
        return np.array([self.loglik(float(d)) for d in grid])

    # -- outputs
    def loglik_2d(self, dfm, a1, a2):
        """``log L`` from the 2-D correlation (:meth:`score_2d`), a quarter of the band's pixels as independent samples."""
        r = min(max(self.score_2d(dfm, a1, a2), 0.0), 0.999)
        return -0.5 * self.n_eff_2d * np.log1p(-r * r)

    def score_2d(self, dfm, a1, a2, with_count=False):
        """Correlation of the locally normalised 2-D band spectrum and model (-1..1)."""
        r, n_pix = self._score_2d(dfm, a1, a2)
        return (r, n_pix) if with_count else r

    def _score_2d(self, dfm, a1, a2):
        i0, w, ok = self._ring_coordinates(dfm, a1, a2)
        phase_b = self.chi(dfm, self.kb1) / np.pi
        prof = self._binned(i0, w, ok)[self.band1]
        if not np.all(np.isfinite(prof)) or np.any(np.diff(phase_b) <= 0):
            return 0.0, 0
        md, sd, n = _window_stats(phase_b, prof)
        mm, sm, _ = _window_stats(phase_b, self.ctf2(dfm, self.kb1, self.fac_b1))
        valid = (n >= 3) & (phase_b - 0.5 >= phase_b[0]) & (phase_b + 0.5 <= phase_b[-1])
        if valid.sum() < 5:
            return 0.0, 0
        # window statistics of the valid band (contiguous rings), read at each pixel's ring coordinate
        idx = np.flatnonzero(self.band1)[valid].astype(np.float64)
        r = i0 + w
        inside = ok & (r >= idx[0]) & (r <= idx[-1])
        if inside.sum() < 10:
            return 0.0, 0
        rin = r[inside]
        floor = np.median(sd[valid])
        dpix = (self.pp[inside] - np.interp(rin, idx, md[valid])) / np.maximum(np.interp(rin, idx, sd[valid]), floor)
        dfl = dfm + a1 * self.c2t[inside] + a2 * self.s2t[inside]
        mpix = (self.ctf2(dfl, self.kp[inside], self.fac_p[inside]) - np.interp(rin, idx, mm[valid])) / np.maximum(
            np.interp(rin, idx, sm[valid]), 1e-6)  # fmt: skip
        return _ncc(dpix, mpix), int(inside.sum())

    def diagnostics(self, dfm, a1, a2):
        """Normalised equiphase profile and model on the ring grid (NaN outside the valid band) and the fit resolution."""
        spec = np.full(self.nr, np.nan)
        fit = np.full(self.nr, np.nan)
        prof = self.profile(dfm, a1, a2)[self.band1]
        phase_b = self.chi(dfm, self.kb1) / np.pi
        if np.all(np.isfinite(prof)) and np.all(np.diff(phase_b) > 0):
            dn, mn, valid = _normalised_pair(phase_b, prof, self.ctf2(dfm, self.kb1, self.fac_b1))
            if dn is not None:
                idx = np.flatnonzero(self.band1)[valid]
                spec[idx], fit[idx] = dn[valid], mn[valid]
        return spec, fit, self._fit_resolution(spec, fit, dfm)

    def _fit_resolution(self, spec1, fit1, dfm):
        k1 = self.k1
        idx = np.flatnonzero(np.isfinite(spec1) & np.isfinite(fit1))
        if idx.size < 5:
            return float(1.0 / self.kmax)
        corr = np.full(k1.shape, np.nan)
        dk = k1[1] - k1[0]
        for i in idx:
            dchi = abs(2 * np.pi * self.lam * dfm * k1[i] - 2 * np.pi * self.cs * self.lam**3 * k1[i] ** 3)
            half = max(2, int(np.ceil(0.5 * (np.pi / max(dchi, 1e-12)) / dk)))  # one CTF^2 period
            lo, hi = max(idx[0], i - half), min(idx[-1], i + half)
            if hi - lo + 1 < 5:
                continue
            corr[i] = _ncc(spec1[lo : hi + 1], fit1[lo : hi + 1])
        chi1 = self.chi(dfm, k1)
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
            return float(1.0 / k1[start]) if k1[start] > 0 else float(1.0 / self.kmax)
        return float(1.0 / k1[last_good])


# --------------------------------------------------------------------------- search helpers
def _defocus_grid(fit: _SpectrumFit, dmin: float, dmax: float) -> np.ndarray:
    step = _GRID_PHASE_STEP_RAD / (np.pi * fit.lam * fit.kmax**2)
    return np.arange(dmin, dmax + 0.5 * step, step)


def _maximise_1d(fn, grid, values):
    """Refine the best grid point of ``values`` (= fn(grid)) by a bounded scalar search between its neighbours."""
    i0 = int(np.argmax(values))
    lo, hi = grid[max(i0 - 1, 0)], grid[min(i0 + 1, len(grid) - 1)]
    if hi <= lo:
        return float(grid[i0])
    res = optimize.minimize_scalar(lambda d: -fn(d), bounds=(lo, hi), method="bounded", options={"xatol": 1.0})
    return float(res.x) if -res.fun >= values[i0] else float(grid[i0])


def _refine_2d(fit: _SpectrumFit, start, astigmatism: bool, log_prior, astig_starts):
    """Nelder-Mead over (mean defocus, a1, a2) of ``log L + log_prior``; returns (dfm, a1, a2)."""
    dfm0, a10, a20 = start
    if not astigmatism:
        def cost1(p):
            return -(fit.loglik(float(p[0])) + log_prior(float(p[0]), 0.0, 0.0))

        step = 0.005 * dfm0 + 20
        r = optimize.minimize(cost1, np.array([dfm0]), method="Nelder-Mead",
                              options={"initial_simplex": np.array([[dfm0], [dfm0 + step]]), "xatol": 2.0,
                                       "fatol": 0.02, "maxiter": 200})  # fmt: skip
        return float(r.x[0]), 0.0, 0.0

    def cost(p):
        return -(fit.loglik_2d(float(p[0]), float(p[1]), float(p[2])) + log_prior(float(p[0]), float(p[1]), float(p[2])))

    best = None
    for s in [(dfm0, a10, a20)] + [(dfm0, a10 + da1, a20 + da2) for da1, da2 in astig_starts]:
        d = 0.005 * dfm0 + 50
        simplex = np.array([s, np.add(s, (d, 0, 0)), np.add(s, (0, d, 0)), np.add(s, (0, 0, d))])
        r = optimize.minimize(cost, np.asarray(s, dtype=np.float64), method="Nelder-Mead",
                              options={"initial_simplex": simplex, "xatol": 2.0, "fatol": 0.02, "maxiter": 300})  # fmt: skip
        if best is None or r.fun < best.fun:
            best = r
    return float(best.x[0]), float(best.x[1]), float(best.x[2])


def _result(fit: _SpectrumFit, dfm, a1, a2, n_tiles, tile_size) -> dict:
    half = float(np.hypot(a1, a2))
    angle = float(np.degrees(0.5 * np.arctan2(a2, a1))) % 180.0 if half > 0 else 0.0
    spec, model, fit_res = fit.diagnostics(dfm, a1, a2)
    return {
        "defocus_u_angstrom": dfm + half,
        "defocus_v_angstrom": dfm - half,
        "astigmatism_angle_deg": angle,
        "score": fit.score_2d(dfm, a1, a2),
        "fit_resolution_angstrom": fit_res,
        "n_tiles": int(n_tiles),
        "tile_size": int(tile_size),
        "diagnostics": {
            "frequency_per_angstrom": fit.k1, "spectrum": spec, "fit": model, "kmin": fit.kmin, "kmax": fit.kmax,
        },  # fmt: skip
    }


def _checked_setup(shape, px, defocus_range_angstrom, resolution_range_angstrom, tile_size, voltage_kv):
    """Validate the common parameters; returns (px, (low, high) resolution, (dmin, dmax), tile size)."""
    px = float(px)
    if not px > 0:
        raise InputError("pixel_size_angstrom", f"must be positive, got {px}")
    if resolution_range_angstrom is None:
        resolution_range_angstrom = (30.0, max(5.0, 2.1 * px))
    lo_res, hi_res = (float(r) for r in resolution_range_angstrom)
    if not (lo_res > hi_res >= 2 * px):
        raise InputError("resolution_range_angstrom",
                         f"need low > high >= Nyquist ({2 * px:g} Å), got {resolution_range_angstrom}")  # fmt: skip
    dmin, dmax = (float(d) for d in defocus_range_angstrom)
    if not 0 < dmin < dmax:
        raise InputError("defocus_range_angstrom", f"need 0 < min < max, got {defocus_range_angstrom}")
    if tile_size is None:
        tile_size = default_tile_size(shape, px, dmax, hi_res, voltage_kv)
    tile_size = int(tile_size)
    if tile_size < 32 or tile_size > min(shape):
        raise InputError("tile_size", f"{tile_size} does not fit an image of shape {tuple(shape)} (need 32..min side)")
    return px, (lo_res, hi_res), (dmin, dmax), tile_size


def _spectrum_fit(image, px, voltage_kv, cs_mm, amp, tilt_angle_deg, tilt_axis_angle_deg, res, tile_size, use_fov):
    corners = tile_centres(image.shape, tile_size, tilt_angle_deg, tilt_axis_angle_deg, use_fov)
    offsets = tile_axis_distance_px(corners, image.shape, tile_size, tilt_axis_angle_deg) * np.tan(
        np.radians(tilt_angle_deg)) * px  # fmt: skip
    power = power_spectrum(image, tile_size, corners)
    return _SpectrumFit(power, px, voltage_kv, cs_mm, amp, res, offsets), len(corners)


def _log_prior(d, centre, width):
    """Log density (up to a constant) of the Cauchy prior of a tilt's defocus: ``-log(1 + ((d - centre) / width)^2)``.

    Heavy-tailed: near the series defocus it pulls like a Gaussian of the same
    width, but a tilt whose own rings clearly sit far away pays at most a few
    log units (``log(1 + 64) = 4.2`` at 8 widths), so its data win.
    """
    return -np.log1p(((np.asarray(d, dtype=np.float64) - centre) / width) ** 2)


def _astig_starts(dfm):
    a0 = max(0.02 * dfm, 200.0)
    return [(a0, 0.0), (-a0, 0.0), (0.0, a0), (0.0, -a0)]


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
        Tilt of the image (degrees): zero-tilt field-of-view strip and the
        tiles' defocus offsets.
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
        Tile side in pixels (even). Default :func:`default_tile_size`.
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
        (correlation of the locally normalised 2-D spectrum and fit, -1..1),
        ``fit_resolution_angstrom``, ``n_tiles``, ``tile_size``,
        ``log_likelihood`` (of the fit, see the module docstring) and
        ``diagnostics``: dict of 1-D arrays on the ring grid
        ``frequency_per_angstrom``, ``spectrum`` (locally normalised
        equiphase profile, NaN outside the fitted band), ``fit`` (the locally
        normalised CTF^2 model) and the scalars ``kmin``/``kmax`` (1/Å).
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise InputError("image", f"expected a 2-D image, got shape {img.shape}")
    px, res, (dmin, dmax), tile_size = _checked_setup(img.shape, pixel_size_angstrom, defocus_range_angstrom,
                                                      resolution_range_angstrom, tile_size, voltage_kv)  # fmt: skip
    fit, n_tiles = _spectrum_fit(img, px, voltage_kv, cs_mm, amplitude_contrast, tilt_angle_deg, tilt_axis_angle_deg,
                                 res, tile_size, use_zero_tilt_fov)  # fmt: skip
    grid = _defocus_grid(fit, dmin, dmax)
    df1 = _maximise_1d(fit.loglik, grid, fit.loglik_curve(grid))
    dfm, a1, a2 = _refine_2d(fit, (df1, 0.0, 0.0), astigmatism, lambda d, x, y: 0.0, _astig_starts(df1))
    out = _result(fit, dfm, a1, a2, n_tiles, tile_size)
    out["log_likelihood"] = float(fit.loglik_2d(dfm, a1, a2))
    return out


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
    joint: bool = True,
    defocus_prior_fraction: float = 0.05,
    astigmatism_prior_angstrom: float = 250.0,
) -> pd.DataFrame:
    """Estimate the CTF of every image of a tilt series, jointly (see the module docstring, step 6).

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
        A tilt is an outlier when its defocus or its unconstrained estimate
        differs from the series median by more than this fraction of the
        median.
    joint : bool
        Fit the series jointly (series defocus and astigmatism as priors);
        False: every tilt on its own, as :func:`estimate_defocus`.
    defocus_prior_fraction : float
        Relative width of the (Cauchy) prior of a tilt's defocus around the
        series defocus (expected tilt-to-tilt scatter of the focus).
    astigmatism_prior_angstrom : float
        Width (Å, half the U-V difference) of the Gaussian prior of a tilt's
        astigmatism around the series astigmatism.

    Returns
    -------
    pd.DataFrame
        One row per image in stack order: ``view`` (0-based stack index),
        tilt_angle_deg, defocus_u_angstrom, defocus_v_angstrom,
        astigmatism_angle_deg, score, fit_resolution_angstrom,
        defocus_independent_angstrom (the tilt's own 1-D estimate, no prior),
        outlier (bool). ``attrs`` holds ``series_defocus_angstrom`` and
        ``series_astigmatism_angstrom`` (a1, a2: half-difference components
        along cos 2θ and sin 2θ).
    """
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise InputError("stack", f"expected (n, ny, nx), got shape {stack.shape}")
    angles = np.asarray(tilt_angles_deg, dtype=np.float64).ravel()
    if angles.size != stack.shape[0]:
        raise InputError("tilt_angles_deg", f"{angles.size} angles for {stack.shape[0]} images")
    if not defocus_prior_fraction > 0:
        raise InputError("defocus_prior_fraction", f"must be positive, got {defocus_prior_fraction}")
    if not astigmatism_prior_angstrom > 0:
        raise InputError("astigmatism_prior_angstrom", f"must be positive, got {astigmatism_prior_angstrom}")
    px, res, (dmin, dmax), tile_size = _checked_setup(stack.shape[1:], pixel_size_angstrom, defocus_range_angstrom,
                                                      resolution_range_angstrom, tile_size, voltage_kv)  # fmt: skip
    t0 = time.perf_counter()
    fits, n_tiles, curves = [], [], []
    grid = None
    for i in range(stack.shape[0]):
        f, nt = _spectrum_fit(stack[i], px, voltage_kv, cs_mm, amplitude_contrast, float(angles[i]),
                              tilt_axis_angle_deg, res, tile_size, use_zero_tilt_fov)  # fmt: skip
        grid = _defocus_grid(f, dmin, dmax) if grid is None else grid
        fits.append(f)
        n_tiles.append(nt)
        curves.append(f.loglik_curve(grid))
    curves = np.asarray(curves)
    independent = np.array([_maximise_1d(f.loglik, grid, c) for f, c in zip(fits, curves, strict=True)])
    series_df = _maximise_1d(lambda d: sum(f.loglik(d) for f in fits), grid, curves.sum(axis=0))
    sigma = defocus_prior_fraction * series_df
    log.info("CTF series: joint defocus %.0f Å from %d tilts (%.1f s for the spectra and curves)", series_df,
             len(fits), time.perf_counter() - t0)  # fmt: skip

    # per-tilt defocus: maximum a posteriori with the series prior
    if joint:
        prior = _log_prior(grid, series_df, sigma)
        dfs = np.array([_maximise_1d(lambda d, f=f: f.loglik(d) + _log_prior(d, series_df, sigma), grid, c + prior)
                        for f, c in zip(fits, curves, strict=True)])  # fmt: skip
    else:
        dfs = independent.copy()

    # series astigmatism: summed likelihood of the least tilted images at their defocus
    a1s = a2s = 0.0
    if astigmatism and joint:
        low = np.argsort(np.abs(angles), kind="stable")[:_N_ASTIG_TILTS]

        def cost(p):
            return -sum(fits[i].loglik_2d(dfs[i], float(p[0]), float(p[1])) for i in low)

        best = None
        a0 = max(0.01 * series_df, 100.0)
        for s in [(0.0, 0.0), (a0, a0), (-a0, -a0)]:
            simplex = np.array([s, np.add(s, (a0, 0.0)), np.add(s, (0.0, a0))])
            r = optimize.minimize(cost, np.asarray(s, dtype=np.float64), method="Nelder-Mead",
                                  options={"initial_simplex": simplex, "xatol": 5.0, "fatol": 0.02, "maxiter": 150})  # fmt: skip
            if best is None or r.fun < best.fun:
                best = r
        a1s, a2s = float(best.x[0]), float(best.x[1])
        log.info("CTF series: astigmatism %.0f Å at %.1f deg", 2 * np.hypot(a1s, a2s),
                 np.degrees(0.5 * np.arctan2(a2s, a1s)) % 180.0)  # fmt: skip

    rows = []
    for i, f in enumerate(fits):
        t1 = time.perf_counter()
        if joint:
            def log_prior(d, x, y):
                return _log_prior(d, series_df, sigma) - 0.5 * ((x - a1s) ** 2 + (y - a2s) ** 2) / astigmatism_prior_angstrom**2

            dfm, a1, a2 = _refine_2d(f, (dfs[i], a1s, a2s), astigmatism, log_prior, [])
        else:
            dfm, a1, a2 = _refine_2d(f, (dfs[i], 0.0, 0.0), astigmatism, lambda d, x, y: 0.0, _astig_starts(dfs[i]))
        r = _result(f, dfm, a1, a2, n_tiles[i], tile_size)
        log.info("CTF view %d/%d tilt %.1f: dU %.0f dV %.0f Å angle %.1f score %.3f fit %.1f Å (own estimate %.0f Å; "
                 "%d tiles, %.2f s)", i + 1, len(fits), angles[i], r["defocus_u_angstrom"], r["defocus_v_angstrom"],
                 r["astigmatism_angle_deg"], r["score"], r["fit_resolution_angstrom"], independent[i], r["n_tiles"],
                 time.perf_counter() - t1)  # fmt: skip
        rows.append({"view": i, "tilt_angle_deg": float(angles[i]),
                     **{k: r[k] for k in ("defocus_u_angstrom", "defocus_v_angstrom", "astigmatism_angle_deg",
                                          "score", "fit_resolution_angstrom")},
                     "defocus_independent_angstrom": float(independent[i])})  # fmt: skip
    table = pd.DataFrame(rows)
    mean_df = 0.5 * (table["defocus_u_angstrom"] + table["defocus_v_angstrom"]).to_numpy()
    med = float(np.median(mean_df))
    table["outlier"] = flag_outliers(mean_df, outlier_fraction) | (
        np.abs(table["defocus_independent_angstrom"].to_numpy() - med) > outlier_fraction * abs(med))
    table.attrs["series_defocus_angstrom"] = float(series_df)
    table.attrs["series_astigmatism_angstrom"] = (a1s, a2s)
    return table
