"""Rule crop_particles: cut boxes around the table positions of one tomogram."""

from stasnake.io.dynamo_table import particle_positions, read_table, write_table
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.sta.crop import crop_particles
from stasnake.sta.tables import table_after_crop
from stasnake.workflow import log, run_rule


def main(smk):
    tomogram, apix = read_mrc(smk.input.tomogram, mmap=True)
    table = read_table(smk.input.table)
    particles, kept, remainder = crop_particles(
        tomogram, particle_positions(table), smk.params.box_size_px, edge_policy=smk.params.edge_policy
    )
    n_out = int((~kept).sum())
    log.info("cropped %d of %d particles (box %d px); %d near the edge (%s)",
             int(kept.sum()), len(table), smk.params.box_size_px, n_out, smk.params.edge_policy)  # fmt: skip
    write_mrc(smk.output.particles, particles, apix)
    write_table(smk.output.table, table_after_crop(table, kept, remainder))


run_rule(snakemake, main)  # noqa: F821
