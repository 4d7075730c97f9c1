"""Particle cleaning by cross-correlation (CC): the two CC filters of the Dynamo HIV-1 VLP protocol.

1. :func:`gmm_cc_threshold` (protocol step 6, after the second per-tomogram project): per
   tomogram, a two-component 1-D Gaussian mixture is fitted to the CC values (table column 10,
   like MATLAB ``fitgmdist(cc, 2)``); the threshold is the minimum of the fitted mixture density
   between the two component means plus an empirical constant (0.01 in the protocol).
   Particles with ``cc < threshold`` are removed (:func:`apply_cc_threshold`).
2. :func:`latitude_cc_filter` (protocol step 8A, ``dpksta.filters.byCC``): per tomogram (and per
   half set: call it on each half's table), the CC trend with latitude on the VLP (a
   missing-wedge effect: particles at the poles score lower than at the equator) is fitted with
   the first two terms of a general Fourier series and subtracted; particles whose
   latitude-normalised CC is below ``mean - n_sd * SD`` are removed.

Latitude (:func:`latitude_deg`) is the elevation of the particle's z axis (its surface normal,
``R[:, 2]`` of the active pose ``R``, reference -> tomogram) above the tomogram's xy plane:
``latitude = arcsin(n_z) = 90 - angle(normal, tomogram z)``, in degrees, -90..90; for Dynamo
angles with ``0 <= tilt <= 180`` it is ``90 - tilt``. The equator of a VLP is latitude 0, the
top pole (normal along +z, towards the beam) +90.

"First two terms of a general Fourier series" is read as MATLAB's ``fourier2`` model::

    cc(phi) = a0 + a1 cos(w phi) + b1 sin(w phi) + a2 cos(2 w phi) + b2 sin(2 w phi)

with ``phi`` the latitude in radians. MATLAB fits ``w`` too; here ``w`` (``omega``) is fixed,
1 by default, which keeps the fit linear and stable: with ``w = 1`` the basis spans the same
functions whether written in latitude or in Dynamo tilt (``phi = pi/2 - tilt``), so the choice
of angle does not matter, and ``cos 2 phi`` carries the pole/equator (missing-wedge) contrast,
``sin phi`` a north/south asymmetry. The normalised CC is the residual ``cc - fit(phi)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.geometry.euler import dynamo_euler_to_matrix

#: The protocol's empirical constant added to the mixture minimum.
PROTOCOL_GMM_OFFSET = 0.01
#: Fewer particles than this and no mixture is fitted (everything is kept).
MIN_PARTICLES_GMM = 10
#: Fourier coefficient names of the latitude model, in design-matrix order.
FOURIER_TERMS = ("a0", "a1", "b1", "a2", "b2")


# --------------------------------------------------------------------------------------------
# Two-component Gaussian mixture threshold
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GmmThreshold:
    """Result of :func:`gmm_cc_threshold`.

    Attributes
    ----------
    means, sigmas, weights : tuple of float
        The two components, low-CC ("bad") component first. NaN when no fit was made.
    threshold : float
        Keep particles with ``cc >= threshold``; ``-inf`` keeps every particle.
    minimum : float
        CC of the mixture-density minimum between the means (``threshold - offset`` when
        bimodal); NaN otherwise.
    offset : float
        Constant added to the minimum (the protocol's 0.01).
    bimodal : bool
        True when the fitted mixture density has a minimum strictly between the two means.
    reason : str
        Empty when bimodal; otherwise why the fallback (keep everything) was used.
    n : int
        Number of finite CC values fitted.
    log_likelihood : float
        Mean log-likelihood per particle of the fit (NaN when no fit was made).
    """

    means: tuple[float, float]
    sigmas: tuple[float, float]
    weights: tuple[float, float]
    threshold: float
    minimum: float
    offset: float
    bimodal: bool
    reason: str
    n: int
    log_likelihood: float

    def density(self, x) -> tuple[np.ndarray, np.ndarray]:
        """(2, len(x)) weighted component densities and (len(x),) mixture density at ``x``."""
        x = np.asarray(x, dtype=np.float64)
        comps = np.stack(
            [
                w * _normal_pdf(x, m, s)
                for m, s, w in zip(self.means, self.sigmas, self.weights, strict=True)
            ]
        )
        return comps, comps.sum(axis=0)


def _normal_pdf(x, mean, sigma):
    return np.exp(-0.5 * ((x - mean) / sigma) ** 2) / (sigma * np.sqrt(2.0 * np.pi))


def fit_gmm_1d(
    values, n_iter: int = 1000, tol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Fit a two-component 1-D Gaussian mixture by expectation-maximisation.

    Parameters
    ----------
    values : array_like
        (n,) finite samples, n >= 2.
    n_iter : int
        Maximum EM iterations.
    tol : float
        Stop when the mean log-likelihood changes by less than this.

    Returns
    -------
    means, sigmas, weights : np.ndarray
        (2,) each, sorted by mean (lowest first).
    log_likelihood : float
        Mean log-likelihood per sample at the end.

    Notes
    -----
    Initialised at the 25th / 75th percentiles with half the sample SD each; variances are
    floored at ``(1e-3 * SD)^2`` so a component cannot collapse onto one value.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    sd = float(x.std())
    floor = (1e-3 * sd) ** 2 if sd > 0 else 1e-12
    means = np.percentile(x, [25.0, 75.0]).astype(np.float64)
    var = np.full(2, max((0.5 * sd) ** 2, floor))
    weights = np.array([0.5, 0.5])
    previous = -np.inf
    ll = -np.inf
    for _ in range(int(n_iter)):
        # E step, in logs for stability
        log_p = (
            np.log(weights)[:, None]
            - 0.5 * np.log(2.0 * np.pi * var)[:, None]
            - 0.5 * (x[None, :] - means[:, None]) ** 2 / var[:, None]
        )
        top = log_p.max(axis=0)
        log_norm = top + np.log(np.exp(log_p - top).sum(axis=0))
        resp = np.exp(log_p - log_norm)
        ll = float(log_norm.mean())
        # M step
        nk = resp.sum(axis=1) + 1e-300
        weights = np.clip(nk / x.size, 1e-12, None)
        means = (resp @ x) / nk
        var = np.maximum((resp * (x[None, :] - means[:, None]) ** 2).sum(axis=1) / nk, floor)
        if abs(ll - previous) < tol:
            break
        previous = ll
    order = np.argsort(means)
    return means[order], np.sqrt(var[order]), weights[order], ll


def gmm_cc_threshold(
    cc, offset: float = PROTOCOL_GMM_OFFSET, grid_points: int = 2001
) -> GmmThreshold:
    """CC threshold of one tomogram from a two-component Gaussian mixture (protocol step 6).

    Parameters
    ----------
    cc : array_like
        (n,) cross-correlations of one tomogram's particles (column 10). Non-finite values are
        ignored.
    offset : float
        Constant added to the mixture minimum (CC units; 0.01 in the protocol).
    grid_points : int
        Samples of the mixture density between the two means used to find its minimum.

    Returns
    -------
    GmmThreshold
        ``threshold = argmin_{mu_low <= x <= mu_high} p(x) + offset`` with ``p`` the fitted
        mixture density. When there is no minimum strictly between the means (the mixture
        is unimodal: no separate low-CC population), or there are fewer than
        ``MIN_PARTICLES_GMM`` values, or all values are equal, no threshold is set
        (``threshold = -inf``, every particle kept) and ``reason`` says why: cutting a
        unimodal distribution would remove good particles.
    """
    values = np.asarray(cc, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    nan2 = (float("nan"), float("nan"))

    def no_fit(reason, means=nan2, sigmas=nan2, weights=nan2, ll=float("nan")):
        return GmmThreshold(
            tuple(map(float, means)), tuple(map(float, sigmas)), tuple(map(float, weights)),
            -np.inf, float("nan"), float(offset), False, reason, int(values.size), float(ll),
        )  # fmt: skip

    if values.size < MIN_PARTICLES_GMM:
        return no_fit(f"only {values.size} finite CC values (< {MIN_PARTICLES_GMM}); kept all")
    if float(np.ptp(values)) == 0.0:
        return no_fit("all CC values are equal; kept all")
    means, sigmas, weights, ll = fit_gmm_1d(values)
    grid = np.linspace(means[0], means[1], int(grid_points))
    dens = sum(w * _normal_pdf(grid, m, s) for m, s, w in zip(means, sigmas, weights, strict=True))
    i = int(np.argmin(dens))
    if i == 0 or i == grid.size - 1 or not (dens[i] < dens[0] and dens[i] < dens[-1]):
        return no_fit(
            "mixture density has no minimum between the component means (unimodal); kept all",
            means, sigmas, weights, ll,
        )  # fmt: skip
    minimum = float(grid[i])
    return GmmThreshold(
        tuple(map(float, means)), tuple(map(float, sigmas)), tuple(map(float, weights)),
        minimum + float(offset), minimum, float(offset), True, "", int(values.size), float(ll),
    )  # fmt: skip


def _require_columns(table: pd.DataFrame, columns, source: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(source, f"table lacks column(s) {', '.join(missing)}")


def gmm_cc_thresholds(
    table: pd.DataFrame, offset: float = PROTOCOL_GMM_OFFSET, source: str = "table"
) -> dict[int, GmmThreshold]:
    """:func:`gmm_cc_threshold` for each tomogram (column ``tomo``) of a Dynamo table."""
    _require_columns(table, ("tomo", "cc"), source)
    return {
        int(tomo): gmm_cc_threshold(group["cc"].to_numpy(), offset)
        for tomo, group in table.groupby("tomo", sort=True)
    }


def apply_cc_threshold(
    table: pd.DataFrame, thresholds_by_tomo, source: str = "table"
) -> pd.DataFrame:
    """Remove the particles whose CC is below their tomogram's threshold.

    Parameters
    ----------
    table : pd.DataFrame
        Dynamo table with ``tomo`` and ``cc``.
    thresholds_by_tomo : mapping
        tomogram number -> threshold (float) or :class:`GmmThreshold`. Every tomogram in the
        table must have one.
    source : str
        Table name for error messages.

    Returns
    -------
    pd.DataFrame
        Copy of the rows with ``cc >= threshold`` (rows are removed, not flagged; a NaN CC is
        removed), original order, index reset.

    Raises
    ------
    InputError
        If a tomogram of the table has no threshold.
    """
    _require_columns(table, ("tomo", "cc"), source)
    limits = {
        int(k): float(v.threshold if isinstance(v, GmmThreshold) else v)
        for k, v in thresholds_by_tomo.items()
    }
    tomos = table["tomo"].to_numpy().astype(np.int64)
    missing = sorted(set(np.unique(tomos).tolist()) - set(limits))
    if missing:
        raise InputError(source, f"no CC threshold for tomogram(s) {missing}")
    cut = np.array([limits[t] for t in tomos], dtype=np.float64)
    keep = table["cc"].to_numpy(dtype=np.float64) >= cut
    return table.loc[keep].reset_index(drop=True)


def plot_cc_threshold(cc, result: GmmThreshold, path, title: str) -> None:
    """Write a PNG (atomic): CC histogram (density), the two components, the mixture, the threshold.

    Parameters
    ----------
    cc : array_like
        (n,) CC values of the tomogram.
    result : GmmThreshold
        Output of :func:`gmm_cc_threshold` for ``cc``.
    path : str or PathLike
        Output PNG.
    title : str
        Plot title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from stasnake.io.atomic import atomic_output

    values = np.asarray(cc, dtype=float).ravel()
    values = values[np.isfinite(values)]
    fig = Figure(figsize=(6.0, 3.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    if values.size:
        ax.hist(
            values,
            bins=50,
            density=True,
            color="0.75",
            edgecolor="none",
            label=f"CC ({values.size})",
        )
        if np.all(np.isfinite(result.means)):
            x = np.linspace(values.min(), values.max(), 400)
            comps, mix = result.density(x)
            ax.plot(x, mix, color="k", lw=1.5, label="mixture")
            ax.plot(x, comps[0], color="tab:red", lw=1.2, ls="--", label="low-CC component")
            ax.plot(x, comps[1], color="tab:blue", lw=1.2, ls="--", label="high-CC component")
    if np.isfinite(result.threshold):
        removed = int((values < result.threshold).sum())
        ax.axvline(result.threshold, color="tab:orange", lw=1.5,
                   label=f"threshold {result.threshold:.4f} ({removed} removed)")  # fmt: skip
    else:
        ax.text(
            0.02,
            0.95,
            "no threshold: " + result.reason,
            transform=ax.transAxes,
            fontsize=7,
            va="top",
        )
    ax.set_xlabel("cross-correlation (column 10)")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")


# --------------------------------------------------------------------------------------------
# Latitude-normalised CC filter
# --------------------------------------------------------------------------------------------


def latitude_deg(table: pd.DataFrame, source: str = "table") -> np.ndarray:
    """Latitude of each particle on its VLP, degrees (-90..90).

    The elevation of the particle's z axis (surface normal; ``R[:, 2]`` of the active pose from
    ``tdrot, tilt, narot``) above the tomogram's xy plane: ``arcsin(n_z)``, equal to
    ``90 - tilt`` for ``0 <= tilt <= 180``. 0 at the equator, +90 at the top pole (normal along
    tomogram +z, the beam direction at zero tilt).
    """
    _require_columns(table, ("tdrot", "tilt", "narot"), source)
    eul = table[["tdrot", "tilt", "narot"]].to_numpy(dtype=np.float64)
    if eul.size == 0:
        return np.zeros(0)
    if not np.all(np.isfinite(eul)):
        i = int(np.flatnonzero(~np.isfinite(eul).all(axis=1))[0])
        raise InputError(source, f"row {i + 1}: Euler angles {eul[i].tolist()} are not finite")
    normal_z = dynamo_euler_to_matrix(eul).reshape(-1, 3, 3)[:, 2, 2]
    return np.degrees(np.arcsin(np.clip(normal_z, -1.0, 1.0)))


def fourier2_design(latitude_degrees, omega: float = 1.0) -> np.ndarray:
    """(n, 5) design matrix ``[1, cos w phi, sin w phi, cos 2 w phi, sin 2 w phi]``, phi in radians."""
    phi = np.radians(np.asarray(latitude_degrees, dtype=np.float64)) * float(omega)
    return np.stack(
        [np.ones_like(phi), np.cos(phi), np.sin(phi), np.cos(2 * phi), np.sin(2 * phi)], axis=1
    )


def fit_latitude_trend(latitude_degrees, cc, omega: float = 1.0) -> np.ndarray:
    """Least-squares coefficients ``(a0, a1, b1, a2, b2)`` of the ``fourier2`` model of CC vs latitude.

    With fewer than 10 particles only the constant ``a0`` (the mean) is fitted, the other
    coefficients are 0. Rank-deficient fits (e.g. all particles at one latitude) return the
    minimum-norm solution, which still reproduces the fitted values.
    """
    lat = np.asarray(latitude_degrees, dtype=np.float64).ravel()
    y = np.asarray(cc, dtype=np.float64).ravel()
    coef = np.zeros(len(FOURIER_TERMS))
    if y.size == 0:
        coef[0] = np.nan
        return coef
    if y.size < 10:
        coef[0] = float(y.mean())
        return coef
    coef, *_ = np.linalg.lstsq(fourier2_design(lat, omega), y, rcond=None)
    return coef


def latitude_trend(latitude_degrees, coefficients, omega: float = 1.0) -> np.ndarray:
    """Evaluate the ``fourier2`` model with ``coefficients`` at the given latitudes (degrees)."""
    return fourier2_design(latitude_degrees, omega) @ np.asarray(coefficients, dtype=np.float64)


def latitude_normalised_cc(
    table: pd.DataFrame, omega: float = 1.0, source: str = "table"
) -> np.ndarray:
    """CC with its latitude trend removed: ``cc - fit(latitude)`` over the whole table (mean ~0).

    Call it on one tomogram (and half set) at a time, or use :func:`latitude_cc_filter`, which
    groups the table.
    """
    _require_columns(table, ("cc",), source)
    lat = latitude_deg(table, source)
    cc = table["cc"].to_numpy(dtype=np.float64)
    return cc - latitude_trend(lat, fit_latitude_trend(lat, cc, omega), omega)


def latitude_cc_filter(
    table: pd.DataFrame, n_sd: float = 1.0, by=("tomo",), omega: float = 1.0, source: str = "table"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Remove particles whose latitude-normalised CC is below ``mean - n_sd * SD`` (protocol step 8A).

    Parameters
    ----------
    table : pd.DataFrame
        Dynamo table (``cc``, Euler angles, the ``by`` columns). For the gold-standard halves,
        call once per half's table (the halves are separate tables in the protocol).
    n_sd : float
        Cut at ``mean - n_sd * SD`` of the normalised CC of each group (SD with ddof=1, as
        MATLAB ``std``); 1 in the protocol.
    by : sequence of str
        Columns defining the groups fitted and cut separately (tomogram by default).
    omega : float
        Fundamental angular frequency ``w`` of the Fourier model (per radian of latitude).
    source : str
        Table name for error messages.

    Returns
    -------
    kept : pd.DataFrame
        Copy of the kept rows, original order, index reset.
    report : pd.DataFrame
        One row per group: the ``by`` values, ``n``, ``removed``, the coefficients
        ``a0 a1 b1 a2 b2``, ``residual_mean``, ``residual_sd``, ``cut`` (on the normalised CC).
    """
    by = list(by)
    _require_columns(table, ["cc", *by], source)
    if not np.isfinite(table["cc"].to_numpy(dtype=np.float64)).all():
        i = int(np.flatnonzero(~np.isfinite(table["cc"].to_numpy(dtype=np.float64)))[0])
        raise InputError(source, f"row {i + 1}: CC is not finite")
    lat = latitude_deg(table, source)
    cc = table["cc"].to_numpy(dtype=np.float64)
    keep = np.ones(len(table), dtype=bool)
    rows = []
    positions = np.arange(len(table))
    for key, group in table.assign(_pos=positions).groupby(by, sort=True):
        idx = group["_pos"].to_numpy()
        coef = fit_latitude_trend(lat[idx], cc[idx], omega)
        resid = cc[idx] - latitude_trend(lat[idx], coef, omega)
        mean = float(resid.mean())
        sd = float(resid.std(ddof=1)) if idx.size > 1 else 0.0
        cut = mean - float(n_sd) * sd
        keep[idx] = resid >= cut
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key, strict=True)), "n": int(idx.size),
                     "removed": int((resid < cut).sum()), **dict(zip(FOURIER_TERMS, coef, strict=True)),
                     "residual_mean": mean, "residual_sd": sd, "cut": cut})  # fmt: skip
    report = pd.DataFrame(
        rows, columns=[*by, "n", "removed", *FOURIER_TERMS, "residual_mean", "residual_sd", "cut"]
    )
    return table.loc[keep].reset_index(drop=True), report


def plot_latitude_cc(
    table: pd.DataFrame, path, title: str, n_sd: float = 1.0, omega: float = 1.0
) -> None:
    """Write a PNG (atomic): CC vs latitude of one group, the Fourier fit and the cut.

    Parameters
    ----------
    table : pd.DataFrame
        One tomogram's (half set's) particles.
    path : str or PathLike
        Output PNG.
    title : str
        Plot title.
    n_sd, omega : float
        As in :func:`latitude_cc_filter`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from stasnake.io.atomic import atomic_output

    lat = latitude_deg(table)
    cc = table["cc"].to_numpy(dtype=np.float64)
    coef = fit_latitude_trend(lat, cc, omega)
    resid = cc - latitude_trend(lat, coef, omega)
    offset = resid.mean() - n_sd * (resid.std(ddof=1) if resid.size > 1 else 0.0)
    removed = resid < offset
    fig = Figure(figsize=(6.0, 3.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.scatter(
        lat[~removed], cc[~removed], s=4, color="tab:blue", label=f"kept ({int((~removed).sum())})"
    )
    ax.scatter(
        lat[removed], cc[removed], s=4, color="tab:red", label=f"removed ({int(removed.sum())})"
    )
    x = np.linspace(-90.0, 90.0, 361)
    trend = latitude_trend(x, coef, omega)
    ax.plot(x, trend, color="k", lw=1.5, label="Fourier fit (2 terms)")
    ax.plot(
        x, trend + offset, color="tab:orange", lw=1.2, ls="--", label=f"cut (mean - {n_sd:g} SD)"
    )
    ax.set_xlabel("latitude (degrees; 0 = equator, 90 = top pole)")
    ax.set_ylabel("cross-correlation (column 10)")
    ax.set_xlim(-90, 90)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
