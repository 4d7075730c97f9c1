"""Rule fsc_against_truth: FSC of the final map against a known map, and its mirror (hand check)."""

from stasnake.io.atomic import write_text_atomic
from stasnake.io.mrc import read_mrc
from stasnake.sta.fsc import describe_resolution, plot_fsc
from stasnake.sta.map_alignment import compare_with_truth_aligned
from stasnake.sta.validate import centre_crop, compare_with_truth
from stasnake.workflow import log, run_rule


def main(smk):
    final, apix = read_mrc(smk.input.final)
    truth, truth_apix = read_mrc(smk.input.truth)
    if smk.params.align:  # the protocol's frame is set by the user's clicks: align first
        box = min(final.shape[0], truth.shape[0])
        fsc, mirrored = compare_with_truth_aligned(centre_crop(final, box), apix, centre_crop(truth, box))
    else:
        fsc, mirrored = compare_with_truth(final, apix, truth, truth_apix, source=smk.input.truth)
    table = fsc.assign(fsc_mirrored_truth=mirrored["fsc"].to_numpy())
    write_text_atomic(smk.output.fsc, table.to_csv(sep="\t", index=False))
    for name, t in (("truth", fsc), ("mirrored truth", mirrored)):
        log.info("FSC against %s: 0.5 at %s, 0.143 at %s", name, describe_resolution(t, 0.5), describe_resolution(t, 0.143))
    plot_fsc({"final vs truth": fsc, "final vs mirrored truth": mirrored}, smk.output.plot)


run_rule(snakemake, main)  # noqa: F821
