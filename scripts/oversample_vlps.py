"""Rule oversample_vlps: crop points on every annotated VLP, normal to its surface (protocol step 2)."""

from stasnake.io.dynamo_table import write_table
from stasnake.io.imod import read_tlt
from stasnake.io.mrc import read_mrc_header
from stasnake.picking.dipoles import read_dipoles
from stasnake.picking.oversample import crop_table_from_dipoles
from stasnake.workflow import log, run_rule


def main(smk):
    header = read_mrc_header(smk.input.tomogram)
    apix = header["pixel_size_angstrom"]
    angles = read_tlt(smk.input.tlt)
    dipoles = read_dipoles(smk.input.dipoles, binning_expected=smk.params.binning)
    table, n_dropped = crop_table_from_dipoles(
        dipoles, smk.params.spacing_px, smk.params.tomo_number, header["shape"],
        radius_offset_px=smk.params.radius_offset_angstrom / apix, apix=apix,
        ymintilt=float(angles.min()), ymaxtilt=float(angles.max()),
    )  # fmt: skip
    log.info("%d VLPs from %s: %d crop points at %.1f px spacing (radius offset %.1f px); "
             "%d outside the tomogram dropped", len(dipoles), smk.input.dipoles, len(table),
             smk.params.spacing_px, smk.params.radius_offset_angstrom / apix, n_dropped)  # fmt: skip
    write_table(smk.output.table, table)


run_rule(snakemake, main)  # noqa: F821
