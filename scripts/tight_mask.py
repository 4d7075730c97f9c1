"""Rule tight_mask (protocol step 8B): an alignment mask that follows the membrane's curvature
over the protein layer of the gold-standard average (and over the membrane with
``protocol.tight_mask_membrane``), within a cylinder about the central unit."""

from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.sta.masks import tight_mask_from_average
from stasnake.workflow import log, run_rule


def main(smk):
    average, apix = read_mrc(smk.input.average)
    mask = tight_mask_from_average(average, apix, lattice_spacing_angstrom=smk.params.lattice_spacing_angstrom,
                                   include_membrane=smk.params.include_membrane)  # fmt: skip
    log.info("tight mask (%s): %.1f %% of the box (sum %.0f voxels)",
             "membrane and protein layer" if smk.params.include_membrane else "protein layer",
             100 * mask.mean(), mask.sum())  # fmt: skip
    write_mrc(smk.output.mask, mask, apix)


run_rule(snakemake, main)  # noqa: F821
