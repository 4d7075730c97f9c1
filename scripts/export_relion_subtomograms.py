"""Rule export_relion_subtomograms: one tomogram's particles as RELION subtomograms and a particles star file."""

from pathlib import Path

from stasnake.io.dynamo_table import read_table
from stasnake.io.mrc import read_mrc_header
from stasnake.io.particle_export import export_relion_subtomograms
from stasnake.workflow import log, run_rule


def main(smk):
    table = read_table(smk.input.table)
    ts = smk.wildcards.ts
    header = read_mrc_header(smk.input.tomogram)
    optics = smk.params.optics
    export_relion_subtomograms(
        smk.input.particles, table, Path(smk.output.star).parent, {smk.params.tomo_number: ts},
        header["pixel_size_angstrom"], version=5, tomogram_sizes_xyz={ts: header["shape"][::-1]},
        optics={"rlnVoltage": optics["voltage_kv"], "rlnSphericalAberration": optics["cs_mm"],
                "rlnAmplitudeContrast": optics["amplitude_contrast"]},
        star_name=Path(smk.output.star).name,
    )  # fmt: skip
    log.info("wrote %d RELION subtomograms to %s and %s", len(table), smk.output.folder, smk.output.star)


run_rule(snakemake, main)  # noqa: F821
