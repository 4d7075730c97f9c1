"""Rule import_tiltseries: sort a raw stack by tilt angle; record order, dose and dark views."""

import json

import numpy as np

from stasnake.io.atomic import write_text_atomic
from stasnake.io.imod import write_tlt
from stasnake.io.mdoc import read_mdoc
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.tilt.dark_views import detect_dark_views
from stasnake.tilt.importing import check_sections, plan_import
from stasnake.validation.samples import parse_exclude_views
from stasnake.workflow import log, run_rule


def main(smk):
    header, sections = read_mdoc(smk.input.mdoc)
    stack, _ = read_mrc(smk.input.stack, mmap=True)
    sections = check_sections(sections, stack.shape[0], smk.input.mdoc, smk.input.stack)
    exclude = parse_exclude_views(smk.params.exclude_views)
    views = detect_dark_views(np.asarray(stack), sections["TiltAngle"].to_numpy(float), source=smk.input.stack,
                              dark_fraction=smk.params.views["dark_fraction"])  # fmt: skip
    flagged = views[views.flagged]
    for row in flagged.itertuples():
        log.warning("view %d at %+.1f deg looks %s (mean %.3g, %.0f %% of expected)", row.view, row.tilt_angle_deg,
                    "dark" if row.dark else "blank", row.mean, 100 * row.mean_ratio)  # fmt: skip
    if smk.params.views["exclude_flagged"]:
        exclude += [a for a in flagged.tilt_angle_deg if all(abs(a - e) > 0.5 for e in exclude)]
    order, acquisition = plan_import(header, sections, stack.shape[0], smk.params.overrides, exclude, smk.input.mdoc)
    log.info("%d tilts from %g to %g deg, pixel %.3f Å, axis %.2f deg; %d view(s) flagged dark/blank%s",
             len(order), order.tilt_angle_deg.min(), order.tilt_angle_deg.max(),
             acquisition["pixel_size_angstrom"], acquisition["tilt_axis_angle_deg"], len(flagged),
             " and excluded" if smk.params.views["exclude_flagged"] else " (kept; set views.exclude_flagged to drop them)")  # fmt: skip
    write_mrc(smk.output.stack, stack[order.raw_index.to_numpy()], acquisition["pixel_size_angstrom"], stack=True)
    write_tlt(smk.output.tlt, order.tilt_angle_deg.to_numpy(), decimals=3)
    write_text_atomic(smk.output.order, order.to_csv(index=False))
    write_text_atomic(smk.output.views, views.sort_values("tilt_angle_deg").to_csv(index=False))
    write_text_atomic(smk.output.acquisition, json.dumps(acquisition, indent=2) + "\n")


run_rule(snakemake, main)  # noqa: F821
