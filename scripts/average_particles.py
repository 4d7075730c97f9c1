"""Rule average_tomogram: average the cropped particles of one tomogram with their poses."""

from stasnake.io.dynamo_table import read_table
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.sta.average import average_particles
from stasnake.sta.poses import symmetry_order, table_poses
from stasnake.workflow import log, run_rule


def main(smk):
    particles, apix = read_mrc(smk.input.particles, mmap=True)
    table = read_table(smk.input.table)
    matrices, shifts = table_poses(table)
    average = average_particles(particles, matrices, shifts, symmetry=symmetry_order(smk.params.symmetry))
    log.info("averaged %d particles (symmetry %s)", len(table), smk.params.symmetry)
    write_mrc(smk.output.average, average, apix)


run_rule(snakemake, main)  # noqa: F821
