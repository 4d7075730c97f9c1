"""Rule import_tiltseries: sort a raw stack by tilt angle; record order and dose."""

import json

from stasnake.io.atomic import write_text_atomic
from stasnake.io.imod import write_tlt
from stasnake.io.mdoc import read_mdoc
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.tilt.importing import plan_import
from stasnake.validation.samples import parse_exclude_views
from stasnake.workflow import log, run_rule


def main(smk):
    header, sections = read_mdoc(smk.input.mdoc)
    stack, _ = read_mrc(smk.input.stack, mmap=True)
    order, acquisition = plan_import(
        header, sections, stack.shape[0], smk.params.overrides,
        parse_exclude_views(smk.params.exclude_views), smk.input.mdoc,
    )  # fmt: skip
    log.info("%d tilts from %g to %g deg, pixel %.3f Å, axis %.2f deg",
             len(order), order.tilt_angle_deg.min(), order.tilt_angle_deg.max(),
             acquisition["pixel_size_angstrom"], acquisition["tilt_axis_angle_deg"])  # fmt: skip
    write_mrc(smk.output.stack, stack[order.raw_index.to_numpy()], acquisition["pixel_size_angstrom"], stack=True)
    write_tlt(smk.output.tlt, order.tilt_angle_deg.to_numpy())
    write_text_atomic(smk.output.order, order.to_csv(index=False))
    write_text_atomic(smk.output.acquisition, json.dumps(acquisition, indent=2) + "\n")


run_rule(snakemake, main)  # noqa: F821
