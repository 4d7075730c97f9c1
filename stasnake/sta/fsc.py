"""Fourier shell correlation, resolution estimates, masks and FSC plots.

Shells: for a cubic box of side n, voxel k of the (full) Fourier transform
belongs to shell ``round(|k| n)`` with ``k`` in cycles per pixel; shells
0 .. n // 2 (Nyquist) are reported. The spatial frequency of shell s is
``s / (n * pixel_size)`` per Å and its resolution ``n * pixel_size / s`` Å
(RELION's ``rlnResolution`` and ``rlnAngstromResolution``).

Threads: uses ``scipy.fft`` with ``workers``; when run alongside numba
``parallel`` kernels set ``OMP_WAIT_POLICY=PASSIVE`` in the environment.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import scipy.fft

FSC_COLUMNS = ["shell", "frequency_per_A", "resolution_A", "fsc", "n_voxels"]


def _shell_index(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Shell of every rfft voxel of an n^3 box and its Hermitian multiplicity."""
    f = np.fft.fftfreq(n) * n
    fr = np.arange(n // 2 + 1, dtype=np.float64)
    r = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + fr[None, None, :] ** 2)
    shell = np.rint(r).astype(np.int64)
    mult = np.full(fr.size, 2.0)
    mult[0] = 1.0
    if n % 2 == 0:
        mult[-1] = 1.0
    return shell, np.broadcast_to(mult, shell.shape)


def fourier_shell_correlation(map1: np.ndarray, map2: np.ndarray, pixel_size_angstrom: float = 1.0,
                              mask: np.ndarray | None = None) -> pd.DataFrame:
    """FSC between two (z, y, x) maps of the same cubic shape.

    Parameters
    ----------
    map1, map2 : np.ndarray
        (n, n, n) maps.
    pixel_size_angstrom : float
        Pixel size in Å (sets the frequency and resolution columns).
    mask : np.ndarray, optional
        (n, n, n) real-space mask multiplied into both maps first.

    Returns
    -------
    pd.DataFrame
        One row per shell 0 .. n // 2 with columns ``shell`` (int),
        ``frequency_per_A`` (1/Å), ``resolution_A`` (Å, inf for shell 0),
        ``fsc`` (NaN where a shell has no power) and ``n_voxels`` (Fourier
        voxels in the shell, counting both Friedel mates).
    """
    a = np.asarray(map1, dtype=np.float32)
    b = np.asarray(map2, dtype=np.float32)
    if a.shape != b.shape or a.ndim != 3 or len(set(a.shape)) != 1:
        raise ValueError(f"maps must be cubic and of equal shape, got {a.shape} and {b.shape}")
    if mask is not None:
        m = np.asarray(mask, dtype=np.float32)
        if m.shape != a.shape:
            raise ValueError(f"mask shape {m.shape} differs from map shape {a.shape}")
        a = a * m
        b = b * m
    n = a.shape[0]
    workers = os.cpu_count() or 1
    fa = scipy.fft.rfftn(a, workers=workers)
    fb = scipy.fft.rfftn(b, workers=workers)
    shell, mult = _shell_index(n)
    nshell = n // 2 + 1
    keep = shell < nshell
    s = shell[keep]
    w = mult[keep]
    cross = np.bincount(s, weights=(w * np.real(fa * np.conj(fb))[keep]), minlength=nshell)
    p1 = np.bincount(s, weights=(w * np.abs(fa[keep]) ** 2), minlength=nshell)
    p2 = np.bincount(s, weights=(w * np.abs(fb[keep]) ** 2), minlength=nshell)
    nvox = np.bincount(s, weights=w, minlength=nshell)
    denom = np.sqrt(p1 * p2)
    with np.errstate(divide="ignore", invalid="ignore"):
        fsc = np.where(denom > 0, cross / denom, np.nan)
        shells = np.arange(nshell)
        freq = shells / (n * float(pixel_size_angstrom))
        res = np.where(shells > 0, 1.0 / freq, np.inf)
    return pd.DataFrame({
        "shell": shells.astype(int),
        "frequency_per_A": freq,
        "resolution_A": res,
        "fsc": fsc,
        "n_voxels": nvox.astype(np.int64),
    })


def fsc_table_from_relion(fsc_block: pd.DataFrame,
                          column: str = "rlnFourierShellCorrelationCorrected") -> pd.DataFrame:
    """Convert a RELION postprocess ``fsc`` block (as read by ``starfile``) to stasnake's layout.

    Parameters
    ----------
    fsc_block : pd.DataFrame
        Block with ``rlnSpectralIndex``, ``rlnResolution`` (1/Å),
        ``rlnAngstromResolution`` and the FSC ``column``.
    column : str
        Which FSC curve to use.

    Returns
    -------
    pd.DataFrame
        Columns ``shell``, ``frequency_per_A``, ``resolution_A``, ``fsc``
        (``n_voxels`` is not in RELION's file and is omitted).
    """
    return pd.DataFrame({
        "shell": fsc_block["rlnSpectralIndex"].astype(int).to_numpy(),
        "frequency_per_A": fsc_block["rlnResolution"].astype(float).to_numpy(),
        "resolution_A": fsc_block["rlnAngstromResolution"].astype(float).to_numpy(),
        "fsc": fsc_block[column].astype(float).to_numpy(),
    })


def resolution_at(fsc_table: pd.DataFrame, threshold: float = 0.143,
                  method: str = "interpolate") -> float:
    """Resolution (Å) at which the FSC first drops below ``threshold``.

    The search starts at shell 1 (the DC term is ignored) and skips NaN shells.
    Let ``i`` be the first shell with ``fsc < threshold`` and ``i - 1`` the
    shell before it.

    - ``method="interpolate"`` (default): linear interpolation of the FSC in
      spatial frequency between shells ``i - 1`` and ``i``; returns
      ``1 / f_cross``.
    - ``method="relion"``: the resolution of shell ``i - 1`` (the last shell at
      or above the threshold), RELION postprocess's ``rlnFinalResolution``.

    For the ABTT RELION postprocess example the first shell below 0.143 is 91;
    "relion" gives 2.845 Å (shell 90), "interpolate" 2.834 Å.

    Edge cases: if the FSC never drops below the threshold, the resolution of
    the last (Nyquist) shell is returned (the true resolution is at least this
    good). If shell 1 is already below it, ``inf`` is returned.

    Parameters
    ----------
    fsc_table : pd.DataFrame
        Columns ``shell``, ``frequency_per_A`` (1/Å), ``fsc``, ordered by shell
        (as from :func:`fourier_shell_correlation` or
        :func:`fsc_table_from_relion`).
    threshold : float
        FSC threshold (0.143 for half maps, 0.5 against a reference).
    method : {"interpolate", "relion"}
        See above.

    Returns
    -------
    float
        Resolution in Å.
    """
    if method not in ("interpolate", "relion"):
        raise ValueError(f"method must be 'interpolate' or 'relion', not {method!r}")
    tab = fsc_table.sort_values("shell")
    tab = tab[(tab["shell"] > 0) & np.isfinite(tab["fsc"])]
    if tab.empty:
        return math.inf
    fsc = tab["fsc"].to_numpy(dtype=np.float64)
    freq = tab["frequency_per_A"].to_numpy(dtype=np.float64)
    below = np.flatnonzero(fsc < threshold)
    if below.size == 0:
        return float(1.0 / freq[-1])
    i = int(below[0])
    if i == 0:
        return math.inf
    if method == "relion":
        return float(1.0 / freq[i - 1])
    f0, f1 = freq[i - 1], freq[i]
    c0, c1 = fsc[i - 1], fsc[i]
    f_cross = f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0)
    return float(1.0 / f_cross)


def soft_spherical_mask(box: int, radius_px: float, edge_px: float) -> np.ndarray:
    """Spherical mask with a raised-cosine edge, centred at ``box // 2``.

    Parameters
    ----------
    box : int
        Side of the cubic box (pixels).
    radius_px : float
        Radius (pixels) up to which the mask is 1.
    edge_px : float
        Width (pixels) of the cosine fall-off from 1 to 0 beyond the radius
        (0 gives a hard edge).

    Returns
    -------
    np.ndarray
        (box, box, box) float32 mask in [0, 1].
    """
    c = box // 2
    g = np.arange(box) - c
    r = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
    if edge_px <= 0:
        return (r <= radius_px).astype(np.float32)
    t = np.clip((r - radius_px) / edge_px, 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


def describe_resolution(fsc_table: pd.DataFrame, threshold: float) -> str:
    """``"12.76 Å"``, or ``"beyond Nyquist (10.80 Å)"`` when the curve never drops below ``threshold``."""
    shells = fsc_table[fsc_table["frequency_per_A"] > 0].dropna(subset=["fsc"])
    value = resolution_at(fsc_table, threshold)
    if len(shells) and bool((shells["fsc"] >= threshold).all()):
        return f"beyond Nyquist ({value:.2f} Å)"
    return f"{value:.2f} Å"


def plot_fsc(fsc_tables: dict, path, thresholds=(0.143, 0.5)) -> None:
    """Plot FSC curves against spatial frequency and write a PNG (atomic).

    Parameters
    ----------
    fsc_tables : dict of str to pd.DataFrame
        Label -> table with ``frequency_per_A`` and ``fsc`` columns.
    path : str or PathLike
        Output PNG file.
    thresholds : tuple of float
        Horizontal threshold lines; the resolution at each (interpolated, Å)
        is given in the legend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from stasnake.io.atomic import atomic_output

    fig = Figure(figsize=(6.4, 4.4), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    fmax = 0.0
    for label, tab in fsc_tables.items():
        tab = tab.sort_values("shell") if "shell" in tab else tab
        tab = tab[tab["frequency_per_A"] > 0]  # the DC term carries no resolution information
        res = [f"{t:g}: {describe_resolution(tab, t)}" for t in thresholds]
        ax.plot(tab["frequency_per_A"], tab["fsc"], label=f"{label} ({', '.join(res)})")
        fmax = max(fmax, float(np.nanmax(tab["frequency_per_A"])))
    for t in thresholds:
        ax.axhline(t, color="grey", linestyle="--", linewidth=0.8)
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_xlim(0.0, fmax if fmax > 0 else 1.0)
    ax.set_ylim(-0.1, 1.05)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")

    def _inv(x):
        # 1/x, kept finite at x = 0 (matplotlib rejects infinite axis limits)
        return 1.0 / np.maximum(np.asarray(x, dtype=np.float64), 1e-6)

    top = ax.secondary_xaxis("top", functions=(_inv, _inv))
    top.set_xlabel("resolution (Å)")
    ticks = [t for t in (50, 20, 10, 8, 6, 5, 4, 3, 2.5, 2, 1.5) if 1.0 / t <= (fmax or 1.0)]
    top.set_xticks(ticks)
    top.set_xticklabels([f"{t:g}" for t in ticks])
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
