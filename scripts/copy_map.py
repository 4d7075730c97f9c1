"""Rule initial_average: a map copied under the name the next step (and the user) looks for."""

from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.workflow import log, run_rule


def main(smk):
    volume, apix = read_mrc(smk.input.average)
    write_mrc(smk.output.average, volume, apix)
    log.info("copied %s to %s", smk.input.average, smk.output.average)


run_rule(snakemake, main)  # noqa: F821
