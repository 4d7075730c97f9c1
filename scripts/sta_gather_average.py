"""Rule sta_gather_average: an iteration's average, weight map, half averages and their FSC."""

import numpy as np

from stasnake.io.atomic import write_text_atomic
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.sta.average import finish_average, load_sums
from stasnake.sta.fsc import (
    describe_resolution,
    fourier_shell_correlation,
    plot_fsc,
    soft_spherical_mask,
)
from stasnake.workflow import log, run_rule


def main(smk):
    project = smk.params.project
    k = int(smk.wildcards.k)
    order = project.round_of(k).symmetry_order
    halves = {"half1": None, "half2": None}
    for path in smk.input.sums:
        half = "half1" if "/sums_half1_" in str(path) else "half2"
        sums = load_sums(path)
        halves[half] = sums if halves[half] is None else halves[half] + sums
    total = halves["half1"] + halves["half2"]
    apix = total.pixel_size_angstrom
    average, weight = finish_average(total, symmetry_order=order)
    half_maps = [finish_average(halves[h], symmetry_order=order)[0] for h in ("half1", "half2")]
    box = average.shape[0]
    mask = read_mrc(smk.input.mask)[0] if smk.input.mask else soft_spherical_mask(box, box / 2 - 3, 2)
    fsc = fourier_shell_correlation(half_maps[0], half_maps[1], apix, mask=mask)
    kind = "gold standard" if project.gold_standard else "halves share one alignment (not independent)"
    log.info("iteration %d: %d particles; half FSC (%s) 0.143: %s, 0.5: %s", k, total.count, kind,
             describe_resolution(fsc, 0.143), describe_resolution(fsc, 0.5))  # fmt: skip
    write_mrc(smk.output.average, average, apix)
    write_mrc(smk.output.weight, np.asarray(weight, dtype=np.float32), apix)
    write_mrc(smk.output.half1, half_maps[0], apix)
    write_mrc(smk.output.half2, half_maps[1], apix)
    write_text_atomic(smk.output.fsc, fsc.to_csv(sep="\t", index=False))
    plot_fsc({f"{project.name} ite {k} ({kind})": fsc}, smk.output.plot)


run_rule(snakemake, main)  # noqa: F821
