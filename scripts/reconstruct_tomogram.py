"""Rule reconstruct_tomogram: weighted back-projection, written slab by slab."""

from stasnake.io.imod import read_tlt
from stasnake.io.mrc import read_mrc
from stasnake.tilt.reconstruct import reconstruct_wbp_to_mrc
from stasnake.workflow import log, run_rule


def main(smk):
    stack, apix = read_mrc(smk.input.aligned, mmap=True)
    angles = read_tlt(smk.input.tlt)
    log.info("WBP of %d tilts of %dx%d px into thickness %d px (slabs of %d px)",
             *stack.shape, smk.params.thickness_px, smk.params.slab_size_px)  # fmt: skip
    reconstruct_wbp_to_mrc(
        stack, angles, smk.params.thickness_px, smk.output.tomogram, apix,
        slab_size=smk.params.slab_size_px, dtype=smk.params.dtype, device=smk.params.device,
    )  # fmt: skip


run_rule(snakemake, main)  # noqa: F821
