"""Rule propose_dipoles: the autopilot's VLP dipoles, by spherical-shell matching in the binned tomogram."""

import numpy as np

from stasnake.errors import InputError
from stasnake.io.imod import read_tlt
from stasnake.io.mrc import read_mrc
from stasnake.picking.detect_vlps import detect_vlps, detections_to_dipoles
from stasnake.picking.dipoles import write_dipoles
from stasnake.workflow import log, run_rule


def plot_detections(volume, detections, path, title):
    """Central xy, xz slices with the detected spheres' outlines (PNG, atomic)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    from stasnake.io.atomic import atomic_output

    fig = Figure(figsize=(10, 5), dpi=100)
    FigureCanvasAgg(fig)
    nz = volume.shape[0]
    axes = fig.subplots(1, 2)
    axes[0].imshow(volume[nz // 2 - 2:nz // 2 + 3].mean(0), cmap="gray", origin="lower")
    axes[0].set_title(f"{title}: xy, central slab")
    axes[1].imshow(volume.mean(1), cmap="gray", origin="lower", aspect="auto")
    axes[1].set_title("xz projection")
    for row in detections.itertuples():
        x, y, z, r = row.x - 1, row.y - 1, row.z - 1, row.radius_px
        axes[0].add_patch(Circle((x, y), np.sqrt(max(r * r - (z - nz // 2) ** 2, 0.0)), fill=False, color="tab:red"))
        axes[1].add_patch(Circle((x, z), r, fill=False, color="tab:red"))
        axes[0].annotate(f"{row.score:.0f}", (x, y), color="tab:red")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png")


def main(smk):
    volume, apix = read_mrc(smk.input.tomogram)
    angles = read_tlt(smk.input.tlt)
    r_min, r_max = (r / apix for r in smk.params.radius_range_angstrom)
    if r_max > 0.5 * min(volume.shape):
        log.warning("radius range up to %.0f px exceeds half the binned tomogram; capped", r_max)
        r_max = 0.5 * min(volume.shape)
    if r_min >= r_max:
        raise InputError("config: picking.vlp_radius_range_angstrom",
                         f"{smk.params.radius_range_angstrom} Å is {r_min:.1f}..{r_max:.1f} px here")  # fmt: skip
    detections = detect_vlps(volume, (r_min, r_max), bilayer_separation_px=smk.params.bilayer_separation_angstrom / apix,
                             tilt_range_deg=(float(angles.min()), float(angles.max())),
                             min_zscore=smk.params.min_zscore)  # fmt: skip
    log.info("proposed %d VLPs (score >= %g): %s", len(detections), smk.params.min_zscore,
             "; ".join(f"({r.x:.0f}, {r.y:.0f}, {r.z:.0f}) r {r.radius_px * apix:.0f} Å score {r.score:.0f}"
                       for r in detections.itertuples()))  # fmt: skip
    if len(detections) == 0:
        log.warning("no VLP found: the proposal is empty; annotate annotations/%s/dipoles.csv by hand",
                    smk.wildcards.ts)  # fmt: skip
    write_dipoles(smk.output.dipoles, detections_to_dipoles(detections, smk.params.binning), binning=smk.params.binning,
                  comment="proposed by the stasnake autopilot (propose_dipoles); copy to annotations/ to edit")  # fmt: skip
    plot_detections(volume, detections, smk.output.plot, smk.wildcards.ts)


run_rule(snakemake, main)  # noqa: F821
