"""Histogram of an iteration's cross-correlations, split by whether particles entered the average."""

from __future__ import annotations

import numpy as np


def plot_cc_selection(cc, selected, eligible, path, title: str) -> None:
    """Write a PNG (atomic) histogram of CC values: averaged vs left out.

    Parameters
    ----------
    cc : array_like
        (n,) CC of each particle (table column 10).
    selected : array_like
        (n,) bool, particles that entered the average.
    eligible : array_like
        (n,) bool, particles that were aligned this iteration (the others are not shown).
    path : str or PathLike
        Output PNG.
    title : str
        Plot title.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from stasnake.io.atomic import atomic_output

    cc = np.asarray(cc, dtype=float)
    selected = np.asarray(selected, bool)
    eligible = np.asarray(eligible, bool)
    fig = Figure(figsize=(6.0, 3.8), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    values = cc[eligible]
    bins = np.histogram_bin_edges(values, bins=40) if values.size else 10
    ax.hist(cc[eligible & selected], bins=bins, color="tab:blue", label=f"averaged ({int((eligible & selected).sum())})")
    ax.hist(cc[eligible & ~selected], bins=bins, color="tab:red", alpha=0.7,
            label=f"left out ({int((eligible & ~selected).sum())})")  # fmt: skip
    ax.set_xlabel("cross-correlation (column 10)")
    ax.set_ylabel("particles")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
