"""Alignment diagnostics plot: residuals against tilt angle and per-bead residual vectors."""

from __future__ import annotations

import numpy as np


def plot_alignment(path, result: dict, tilt_angles_deg, title: str = "", vector_scale: float = 10.0) -> None:
    """Write a PNG of a fiducial alignment (atomic write, Agg backend).

    Left: mean residual per tilt (px) against tilt angle, one faint line per
    bead. Right: fitted bead positions (X, Y of the model, pixels about the
    tomogram centre) with each bead's residual vectors of all tilts drawn from
    it (rotated by ``R(-psi)`` into the aligned frame, whose axes X, Y the
    positions use), magnified ``vector_scale`` times; rejected beads in red.

    Parameters
    ----------
    path : str or PathLike
        Output PNG.
    result : dict
        From :func:`stasnake.tilt.align_model.fit_projection_model`.
    tilt_angles_deg : array_like
        (n_tilts,) tilt angles in the order of the result.
    title : str
        Figure title (e.g. the tilt-series name).
    vector_scale : float
        Magnification of the residual vectors in the right panel.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from stasnake.io.atomic import atomic_output

    angles = np.asarray(tilt_angles_deg, dtype=np.float64)
    order = np.argsort(angles, kind="stable")
    res = np.asarray(result["residuals"], dtype=np.float64)
    length = np.linalg.norm(res, axis=-1)
    rejected = set(result["rejected_beads"])
    fig = Figure(figsize=(11, 4.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2, 1)
    for b in range(res.shape[0]):
        ok = np.isfinite(length[b, order])
        ax.plot(angles[order][ok], length[b, order][ok], color="tab:red" if b in rejected else "0.75", lw=0.7)
    ax.plot(angles[order], result["residual_per_tilt"][order], "o-", color="tab:blue", ms=3, label="mean (kept beads)")
    ax.set_xlabel("tilt angle (°)")
    ax.set_ylabel("residual (px)")
    ax.set_title(f"RMS {result['residual_rms_px']:.2f} px, tilt axis {result['tilt_axis_angle_deg']:.2f}°")
    ax.legend(loc="upper center", fontsize=8)
    ax2 = fig.add_subplot(1, 2, 2)
    pos = np.asarray(result["bead_positions"], dtype=np.float64)
    psi = np.radians(result["tilt_axis_angle_deg"])
    rot_back = np.array([[np.cos(psi), np.sin(psi)], [-np.sin(psi), np.cos(psi)]])  # R(-psi): raw -> aligned axes
    res = res @ rot_back.T
    for b in range(res.shape[0]):
        p = pos[b]
        if not np.isfinite(p).all():
            continue
        ok = np.isfinite(res[b, :, 0])
        color = "tab:red" if b in rejected else "tab:blue"
        ax2.quiver(np.full(ok.sum(), p[0]), np.full(ok.sum(), p[1]), res[b, ok, 0], res[b, ok, 1], angles="xy",
                   scale_units="xy", scale=1.0 / vector_scale, color=color, width=0.003)  # fmt: skip
        ax2.plot(p[0], p[1], "o", color=color, ms=4)
        ax2.annotate(str(b), (p[0], p[1]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ny, nx = result["image_shape"]
    ax2.set_xlim(-nx / 2, nx / 2)
    ax2.set_ylim(ny / 2, -ny / 2)
    ax2.set_aspect("equal")
    ax2.set_xlabel("X (px)")
    ax2.set_ylabel("Y (px)")
    ax2.set_title(f"residual vectors x{vector_scale:g}; {len(rejected)} rejected (red)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")


def plot_alignment_shifts(path, xf, tilt_angles_deg, title: str = "") -> None:
    """PNG of the .xf shifts (DX, DY, pixels) against tilt angle, for alignments without beads.

    Used for imported ``.xf`` files and the cross-correlation fallback, which
    have no residuals to show (atomic write, Agg backend).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from stasnake.io.atomic import atomic_output

    fig = Figure(figsize=(6.4, 3.6), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(tilt_angles_deg, xf[:, 4], "o-", label="DX")
    ax.plot(tilt_angles_deg, xf[:, 5], "s-", label="DY")
    ax.set_xlabel("tilt angle (deg)")
    ax.set_ylabel("shift (px)")
    ax.set_title(title)
    ax.legend()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")
