"""Rule oversample_vlps: crop points on every annotated VLP, normal to its surface (protocol step 2).

With ``picking.refine_dipoles`` each clicked dipole is first snapped onto its membrane by
shell matching in the binned tomogram it was clicked in
(:func:`stasnake.picking.detect_vlps.refine_dipoles`); ``vlps.tsv`` lists the clicked and the
refined centre and radius of every VLP. The annotation file itself is never changed.
"""

import pandas as pd

from stasnake.io.atomic import write_text_atomic
from stasnake.io.dynamo_table import write_table
from stasnake.io.imod import read_tlt
from stasnake.io.mrc import read_mrc, read_mrc_header
from stasnake.picking.detect_vlps import refine_dipoles
from stasnake.picking.dipoles import read_dipoles
from stasnake.picking.oversample import crop_table_from_dipoles
from stasnake.workflow import log, run_rule


def main(smk):
    header = read_mrc_header(smk.input.tomogram)
    apix = header["pixel_size_angstrom"]
    angles = read_tlt(smk.input.tlt)
    dipoles = read_dipoles(smk.input.dipoles, binning_expected=smk.params.binning)
    if smk.params.refine:
        binned, apix_binned = read_mrc(smk.input.binned)
        dipoles, report = refine_dipoles(
            dipoles, binned, smk.params.binning, smk.params.refine_search_fraction, source=str(smk.input.dipoles),
            bilayer_separation_px=smk.params.bilayer_separation_angstrom / apix_binned,
            tilt_range_deg=(float(angles.min()), float(angles.max())),
        )  # fmt: skip
        for r in report.itertuples():
            log.info("VLP %d: centre moved %.1f px, radius %.1f -> %.1f px (shell score %.0f)%s", r.vlp, r.moved_px,
                     r.clicked_radius_px, r.refined_radius_px, r.score,
                     "; at the edge of the search: check the click" if r.at_limit else "")  # fmt: skip
    else:
        report = dipoles[["vlp", "center_x", "center_y", "center_z", "radius_px"]].rename(columns={
            "center_x": "clicked_x", "center_y": "clicked_y", "center_z": "clicked_z", "radius_px": "clicked_radius_px"})
    table, n_dropped = crop_table_from_dipoles(
        dipoles, smk.params.spacing_px, smk.params.tomo_number, header["shape"],
        radius_offset_px=smk.params.radius_offset_angstrom / apix, apix=apix,
        ymintilt=float(angles.min()), ymaxtilt=float(angles.max()),
    )  # fmt: skip
    log.info("%d VLPs from %s: %d crop points at %.1f px spacing (radius offset %.1f px); "
             "%d outside the tomogram dropped", len(dipoles), smk.input.dipoles, len(table),
             smk.params.spacing_px, smk.params.radius_offset_angstrom / apix, n_dropped)  # fmt: skip
    write_text_atomic(smk.output.vlps, pd.DataFrame(report).to_csv(sep="\t", index=False, float_format="%.3f"))
    write_table(smk.output.table, table)


run_rule(snakemake, main)  # noqa: F821
