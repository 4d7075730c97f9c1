"""Rule align_tiltseries: apply an imported IMOD .xf to the sorted stack."""

import json

import numpy as np
import pandas as pd

from stasnake.io.imod import read_xf, write_xf, xf_tilt_axis_angle_deg
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.tilt.align_stack import apply_xf
from stasnake.workflow import log, run_rule


def main(smk):
    order = pd.read_csv(smk.input.order)
    n_views = json.loads(open(smk.input.acquisition).read())["n_views_raw"]
    # The imported .xf has one line per view of the full sorted stack (excluded views included).
    xf = read_xf(smk.input.xf, n_expected=n_views)[order.full_sorted_index.to_numpy()]
    log.info("tilt-axis angle from the .xf: median %.2f deg", float(np.median(xf_tilt_axis_angle_deg(xf))))
    stack, apix = read_mrc(smk.input.stack)
    write_xf(smk.output.xf, xf)
    write_mrc(smk.output.aligned, apply_xf(stack, xf), apix, stack=True)


run_rule(snakemake, main)  # noqa: F821
