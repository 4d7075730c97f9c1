"""Rule align_tiltseries: fiducial alignment (or the bead-free fallback, or an imported IMOD .xf)."""

import numpy as np
import pandas as pd

from stasnake.io.atomic import write_text_atomic
from stasnake.io.imod import read_tlt, read_xf, write_xf, xf_tilt_axis_angle_deg
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.tilt.align_model import fit_projection_model, format_alignment_report, model_to_xf
from stasnake.tilt.align_plot import plot_alignment, plot_alignment_shifts
from stasnake.tilt.align_stack import apply_xf
from stasnake.tilt.align_xcorr import align_by_cross_correlation
from stasnake.tilt.fiducials import track_beads_with_shifts
from stasnake.tilt.importing import read_acquisition
from stasnake.workflow import log, run_rule


def main(smk):
    acq = read_acquisition(smk.input.acquisition)
    order = pd.read_csv(smk.input.order)
    angles = read_tlt(smk.input.tlt)
    stack, apix = read_mrc(smk.input.stack)
    p = smk.params.alignment
    name = smk.wildcards.ts
    if smk.input.xf:
        # The imported .xf has one line per view of the full sorted stack (excluded views included).
        xf = read_xf(smk.input.xf, n_expected=acq["n_views_raw"])[order.full_sorted_index.to_numpy()]
        report = f"{name}: alignment imported from {smk.input.xf}\n"
        plot_alignment_shifts(smk.output.plot, xf, angles, f"{name}: imported .xf")
    elif p["method"] == "xcorr":
        result = align_by_cross_correlation(stack, angles, acq["tilt_axis_angle_deg"])
        xf, report = result["xf"], f"{name}: {result['status']}\n"
        log.warning("%s", result["status"])
        plot_alignment_shifts(smk.output.plot, xf, angles, f"{name}: cross-correlation (fallback)")
    else:
        bead_px = p["bead_diameter_angstrom"] / apix
        tracks, coarse_shifts = track_beads_with_shifts(stack, angles, bead_px, acq["tilt_axis_angle_deg"],
                                                        source=smk.input.stack)  # fmt: skip
        # tilts where no bead is seen clear of its neighbours keep the tracker's shifts
        result = fit_projection_model(tracks, angles, stack.shape[1:], acq["tilt_axis_angle_deg"],
                                      fit_tilt_offset=p["fit_tilt_offset"], fit_magnification=p["fit_magnification"],
                                      fallback_shifts_px=coarse_shifts, source=smk.input.stack)  # fmt: skip
        for i in result["unobserved_tilts"]:
            log.warning("no bead observed at %+.1f deg: its shift comes from the tracker's cross-correlation", angles[i])
        xf, report = model_to_xf(result), format_alignment_report(result, angles, name)
        log.info("fiducial alignment: %d beads tracked, residual RMS %.2f px", tracks.shape[0], result["residual_rms_px"])
        plot_alignment(smk.output.plot, result, angles, title=name)
    log.info("tilt-axis angle: median %.2f deg", float(np.median(xf_tilt_axis_angle_deg(xf))))
    write_xf(smk.output.xf, xf)
    write_text_atomic(smk.output.report, report)
    write_mrc(smk.output.aligned, apply_xf(stack, xf), apix, stack=True)


run_rule(snakemake, main)  # noqa: F821
