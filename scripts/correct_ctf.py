"""Rule correct_ctf: phase-flip the aligned stack with an imported IMOD defocus file."""

import json

import pandas as pd

from stasnake.errors import InputError
from stasnake.io.imod import read_defocus, write_defocus
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.tilt.ctf_correct import defocus_from_imod, phase_flip_stack
from stasnake.workflow import log, run_rule, threads


def main(smk):
    order = pd.read_csv(smk.input.order)
    acquisition = json.loads(open(smk.input.acquisition).read())
    imported = read_defocus(smk.input.defocus)
    per_view = defocus_from_imod(imported)
    if len(per_view) != acquisition["n_views_raw"]:
        raise InputError(smk.input.defocus, f"covers {len(per_view)} views, the tilt series has {acquisition['n_views_raw']}")
    defocus = per_view.iloc[order.full_sorted_index.to_numpy()].reset_index(drop=True)
    log.info("defocus %.0f..%.0f Å over %d tilts", defocus.defocus_u_angstrom.min(), defocus.defocus_u_angstrom.max(), len(defocus))
    stack, apix = read_mrc(smk.input.aligned)
    flipped = phase_flip_stack(stack, apix, defocus, acquisition["voltage_kv"], acquisition["cs_mm"],
                               acquisition["amplitude_contrast"], workers=threads())  # fmt: skip
    write_mrc(smk.output.flipped, flipped, apix, stack=True)
    kept = imported.iloc[order.full_sorted_index.to_numpy()].reset_index(drop=True)
    kept[["view_start", "view_end"]] = [[i + 1, i + 1] for i in range(len(kept))]
    write_defocus(smk.output.defocus, kept)


run_rule(snakemake, main)  # noqa: F821
