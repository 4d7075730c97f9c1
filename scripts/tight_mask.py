"""Rule tight_mask (protocol step 8B): an alignment mask that follows the membrane and the
protein layer of the gold-standard average, within a cylinder about the central unit."""

from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.sta.masks import tight_mask_from_average
from stasnake.workflow import log, run_rule


def main(smk):
    average, apix = read_mrc(smk.input.average)
    mask = tight_mask_from_average(average, apix, lattice_spacing_angstrom=smk.params.lattice_spacing_angstrom)
    log.info("tight mask: %.1f %% of the box (sum %.0f voxels)", 100 * mask.mean(), mask.sum())
    write_mrc(smk.output.mask, mask, apix)


run_rule(snakemake, main)  # noqa: F821
