"""Rule bin_tomogram: a binned copy of a tomogram by Fourier cropping."""

from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.tilt.reconstruct import bin_volume_fourier
from stasnake.workflow import log, run_rule


def main(smk):
    factor = int(smk.wildcards.b)
    volume, apix = read_mrc(smk.input.tomogram, mmap=True)
    binned = bin_volume_fourier(volume, factor)
    log.info("binned %s by %d: %s -> %s", smk.input.tomogram, factor, volume.shape, binned.shape)
    write_mrc(smk.output.binned, binned, apix * factor, dtype=smk.params.dtype)


run_rule(snakemake, main)  # noqa: F821
