"""Rule export_dynamo_data: one tomogram's cropped particles as a Dynamo data folder (particle_00001.em ...)."""

from stasnake.io.dynamo_table import read_table
from stasnake.io.particle_export import export_dynamo_data_folder
from stasnake.workflow import log, run_rule


def main(smk):
    table = read_table(smk.input.table)
    folder = export_dynamo_data_folder(
        smk.input.particles, table, smk.output.folder, tag_padding=smk.params.tag_padding,
        tomogram_paths={smk.params.tomo_number: str(smk.input.tomogram)},
    )  # fmt: skip
    log.info("wrote %d particles and crop.tbl to %s", len(table), folder)


run_rule(snakemake, main)  # noqa: F821
