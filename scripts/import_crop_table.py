"""Rule import_crop_table: a Dynamo table as the crop positions of one tomogram."""

from stasnake.io.dynamo_table import read_table, write_table
from stasnake.io.imod import read_tlt
from stasnake.io.mrc import read_mrc_header
from stasnake.sta.tables import prepare_crop_table, rows_of_tomogram
from stasnake.workflow import log, run_rule


def main(smk):
    table = read_table(smk.input.table)
    if smk.params.shared_table:  # one table for all tilt series: this one's rows by tomo number
        table = rows_of_tomogram(table, smk.params.tomo_number, smk.params.all_tomo_numbers, source=smk.input.table)
    header = read_mrc_header(smk.input.tomogram)
    angles = read_tlt(smk.input.tlt)
    table = prepare_crop_table(
        table, smk.params.tomo_number, header["shape"], header["pixel_size_angstrom"],
        (float(angles.min()), float(angles.max())), source=smk.input.table,
    )  # fmt: skip
    log.info("%d particles for tomogram %d", len(table), smk.params.tomo_number)
    write_table(smk.output.table, table)


run_rule(snakemake, main)  # noqa: F821
