"""Rule prepare_view: a filtered viewing copy of a binned tomogram for clicking annotations."""

from stasnake.annotations import prepare_view
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.workflow import log, run_rule


def main(smk):
    volume, apix = read_mrc(smk.input.volume)
    view = prepare_view(volume, apix, smk.params.lowpass_angstrom, invert=smk.params.invert)
    write_mrc(smk.output.view, view, apix)
    log.info("viewing copy: low-pass %.0f Å%s", smk.params.lowpass_angstrom, ", inverted" if smk.params.invert else "")


run_rule(snakemake, main)  # noqa: F821
