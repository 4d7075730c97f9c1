"""Rule crop_particles: cut boxes around the table positions of one tomogram, streamed into one stack.

The tomogram is memory-mapped and the boxes are written chunk by chunk, so the
memory use does not grow with the number of particles (docs/particles.md).
"""

from stasnake.errors import InputError
from stasnake.io.dynamo_table import particle_positions, read_table, write_table
from stasnake.io.mrc import read_mrc
from stasnake.io.particle_export import write_particle_stack
from stasnake.sta.crop import check_box_fits, iter_crop, plan_crop
from stasnake.sta.tables import table_after_crop
from stasnake.workflow import log, run_rule


def main(smk):
    tomogram, apix = read_mrc(smk.input.tomogram, mmap=True)
    table = read_table(smk.input.table)
    box = smk.params.box_size_px
    check_box_fits(box, tomogram.shape, smk.input.tomogram)
    if len(table) == 0:
        raise InputError(smk.input.table, "holds no particles")
    plan = plan_crop(
        tomogram.shape,
        particle_positions(table),
        box,
        smk.params.edge_policy,
        source=smk.input.table,
    )
    dropped = table["tag"].to_numpy()[~plan.kept]
    log.info("cropping %d of %d particles (box %d px, edge policy %s)", plan.n_kept, len(table), box,
             smk.params.edge_policy)  # fmt: skip
    if len(dropped):
        log.warning("%d particle(s) dropped, their box leaves the tomogram: tags %s", len(dropped),
                    " ".join(str(t) for t in dropped))  # fmt: skip
    padded = int((plan.kept & ~plan.inside).sum())
    if padded:
        log.info("%d box(es) padded with their mean where they leave the tomogram", padded)
    write_particle_stack(smk.output.particles, iter_crop(tomogram, plan), plan.n_kept, box, apix)
    write_table(smk.output.table, table_after_crop(table, plan.kept, plan.remainder_xyz[plan.kept]))


run_rule(snakemake, main)  # noqa: F821
