"""Motion-correction diagnostics plot: drift trajectories and total drift per tilt."""

from __future__ import annotations

import numpy as np
import pandas as pd


def plot_drift(path, drift: pd.DataFrame, title: str = "") -> None:
    """Write a PNG of the estimated whole-frame drift of a tilt series (atomic, Agg backend).

    Left: each tilt's trajectory (dx, dy in pixels, frame sum at the origin),
    coloured by tilt angle. Right: the drift path length of each tilt against
    its tilt angle (a tilt whose movie moved much more than its neighbours is
    worth a look).

    Parameters
    ----------
    path : str or PathLike
        Output PNG.
    drift : pd.DataFrame
        One row per frame: ``z_value``, ``tilt_angle_deg``, ``frame``,
        ``dx_px``, ``dy_px``.
    title : str
        Figure title (e.g. the tilt-series name).
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    from stasnake.io.atomic import atomic_output

    fig = Figure(figsize=(10, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    norm = Normalize(drift.tilt_angle_deg.min(), drift.tilt_angle_deg.max())
    cmap = colormaps["coolwarm"]
    lengths = []
    for (_, angle), movie in drift.groupby(["z_value", "tilt_angle_deg"], sort=True):
        xy = movie.sort_values("frame")[["dx_px", "dy_px"]].to_numpy()
        left.plot(xy[:, 0], xy[:, 1], "-", lw=0.8, color=cmap(norm(angle)))
        left.plot(xy[:1, 0], xy[:1, 1], ".", ms=3, color=cmap(norm(angle)))
        lengths.append((angle, float(np.sum(np.hypot(*np.diff(xy, axis=0).T)))))
    left.set(xlabel="dx (px)", ylabel="dy (px)", title="trajectories (dot: first frame)", aspect="equal")
    fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=left, label="tilt angle (°)")
    angles, length = np.array(lengths).T
    right.plot(angles, length, "o", ms=4)
    right.set(xlabel="tilt angle (°)", ylabel="drift path length (px)", title="total drift per tilt")
    right.set_ylim(bottom=0)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")

