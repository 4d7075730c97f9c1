"""Rule sta_average_chunk: Fourier sums (particles and wedge weights) of one chunk of an iteration's particles."""

import pandas as pd

from stasnake.io.dynamo_table import read_table
from stasnake.io.mrc import read_mrc_header
from stasnake.sta.average import accumulate_particles, empty_sums, save_sums, tilt_ranges_from_table
from stasnake.sta.poses import table_poses
from stasnake.sta.project import ParticleStacks, chunk_rows
from stasnake.workflow import log, run_rule


def main(smk):
    project = smk.params.project
    table = read_table(smk.input.table)
    index = pd.read_csv(smk.input.index)
    rows = chunk_rows(table, smk.wildcards.half, int(smk.wildcards.chunk), project.chunk_size)
    rows = rows[table["averaged_value"].to_numpy()[rows] != 0]
    chunk = table.iloc[rows]
    matrices, shifts = table_poses(chunk)
    header = read_mrc_header(smk.input.particles[0])
    if len(rows):
        sums = accumulate_particles(ParticleStacks(index, rows), matrices, shifts, tilt_ranges_from_table(chunk),
                                    device=smk.params.device, pixel_size_angstrom=header["pixel_size_angstrom"])  # fmt: skip
    else:  # every particle of the chunk was left out of the average
        sums = empty_sums(header["shape"][-1], header["pixel_size_angstrom"])
    log.info("summed %d particles of chunk %s/%s", len(rows), smk.wildcards.half, smk.wildcards.chunk)
    save_sums(smk.output.sums, sums)


run_rule(snakemake, main)  # noqa: F821
