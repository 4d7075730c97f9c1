"""Plots of CTF estimation results (matplotlib Agg figures, written atomically)."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd


def _figure(size):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> None:
    from stasnake.io.atomic import atomic_output

    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")


def plot_ctf_series(table: pd.DataFrame, path: str | os.PathLike, outlier_fraction: float = 0.2) -> None:
    """Defocus U/V and fit resolution against tilt angle (PNG).

    Parameters
    ----------
    table : pd.DataFrame
        Output of :func:`stasnake.tilt.ctf_estimate.estimate_tilt_series_ctf`
        (tilt_angle_deg, defocus_u_angstrom, defocus_v_angstrom,
        fit_resolution_angstrom, outlier).
    path : str or PathLike
        Output PNG.
    outlier_fraction : float
        Half-width of the shaded band around the median mean defocus.
    """
    t = table.sort_values("tilt_angle_deg")
    ang = t["tilt_angle_deg"].to_numpy(float)
    du = t["defocus_u_angstrom"].to_numpy(float) / 1e4
    dv = t["defocus_v_angstrom"].to_numpy(float) / 1e4
    out = t["outlier"].to_numpy(bool) if "outlier" in t else np.zeros(len(t), bool)
    med = float(np.median(0.5 * (du + dv)))
    fig = _figure((6.4, 6.0))
    ax = fig.add_subplot(2, 1, 1)
    ax.axhspan(med * (1 - outlier_fraction), med * (1 + outlier_fraction), color="0.9", label=f"median ±{outlier_fraction:.0%}")
    ax.axhline(med, color="0.5", linewidth=0.8)
    ax.plot(ang, du, "o-", color="tab:blue", markersize=3, label="defocus U")
    ax.plot(ang, dv, "s-", color="tab:green", markersize=3, label="defocus V")
    if out.any():
        ax.plot(ang[out], du[out], "o", color="red", markersize=6, label="outlier")
        ax.plot(ang[out], dv[out], "s", color="red", markersize=6)
    ax.set_xlabel("tilt angle (°)")
    ax.set_ylabel("defocus (µm, underfocus +)")
    ax.legend(fontsize=7)
    ax2 = fig.add_subplot(2, 1, 2)
    ax2.plot(ang, t["fit_resolution_angstrom"].to_numpy(float), "o-", color="tab:purple", markersize=3)
    if out.any():
        ax2.plot(ang[out], t["fit_resolution_angstrom"].to_numpy(float)[out], "o", color="red", markersize=6)
    ax2.set_xlabel("tilt angle (°)")
    ax2.set_ylabel("fit resolution (Å)")
    _save(fig, path)


def plot_ctf_fit(diagnostics: dict, path: str | os.PathLike, title: str = "") -> None:
    """1-D background-subtracted spectrum and fitted CTF^2 of one image (PNG).

    ``diagnostics`` is the dict of the same name returned by
    :func:`stasnake.tilt.ctf_estimate.estimate_defocus`.
    """
    k = np.asarray(diagnostics["frequency_per_angstrom"], float)
    s = np.asarray(diagnostics["spectrum"], float)
    f = np.asarray(diagnostics["fit"], float)
    band = (k >= diagnostics["kmin"]) & (k <= diagnostics["kmax"]) & np.isfinite(s)
    fig = _figure((6.4, 3.6))
    ax = fig.add_subplot(1, 1, 1)
    if band.any():
        sb = s[band]
        scale = (sb - sb.mean()).std() or 1.0
        ax.plot(k[band], (sb - sb.mean()) / scale, color="black", linewidth=1, label="spectrum (bg-subtracted)")
        ax.plot(k[band], (f[band] - f[band].mean()) / (f[band].std() or 1.0), color="tab:red", linewidth=1, label="CTF² fit")
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("normalised amplitude")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)
