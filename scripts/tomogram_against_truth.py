"""Rule tomogram_against_truth: per-shell correlation of a tomogram with the synthetic truth phantom."""

from stasnake.io.atomic import write_text_atomic
from stasnake.io.mrc import read_mrc
from stasnake.sta.fsc import plot_fsc
from stasnake.tilt.validate_tomogram import correlation_with_truth
from stasnake.workflow import log, run_rule


def main(smk):
    tomogram, apix = read_mrc(smk.input.tomogram)
    phantom, _ = read_mrc(smk.input.phantom)
    shells, band = correlation_with_truth(tomogram, phantom, apix, source=smk.input.phantom)
    log.info("%s: correlation with the truth phantom %.3f over 200-30 Å", smk.wildcards.ts, band)
    table = shells.assign(band_200_30_A_correlation=band)  # the summary number, repeated on every row
    write_text_atomic(smk.output.table, table.to_csv(sep="\t", index=False))
    plot_fsc({f"{smk.wildcards.ts} tomogram vs truth phantom (200-30 Å: {band:.3f})": shells}, smk.output.plot)


run_rule(snakemake, main)  # noqa: F821
