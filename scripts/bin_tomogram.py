"""Rule bin_tomogram: a binned copy of a tomogram by Fourier cropping, slab by slab."""

from stasnake.io.mrc import read_mrc_header
from stasnake.tilt.reconstruct import bin_mrc_fourier
from stasnake.workflow import log, run_rule


def main(smk):
    factor = int(smk.wildcards.b)
    shape = read_mrc_header(smk.input.tomogram)["shape"]
    log.info("binning %s %s by %d (Fourier cropping, memory-bounded)", smk.input.tomogram, shape, factor)
    bin_mrc_fourier(smk.input.tomogram, smk.output.binned, factor, dtype=smk.params.dtype)


run_rule(snakemake, main)  # noqa: F821
