"""Rule final_average: merge tomograms, average all and even/odd halves, gold-standard FSC.

Maps are written protein-bright (contrast inverted from the tomograms), as RELION expects.
"""

import numpy as np
import pandas as pd

from stasnake.io.atomic import write_text_atomic
from stasnake.io.dynamo_table import read_table, write_table
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.sta.average import average_particles
from stasnake.sta.fsc import (
    describe_resolution,
    fourier_shell_correlation,
    plot_fsc,
    soft_spherical_mask,
)
from stasnake.sta.poses import symmetry_order, table_poses
from stasnake.sta.tables import split_even_odd
from stasnake.workflow import log, run_rule


def main(smk):
    n_sym = symmetry_order(smk.params.symmetry)
    sums = {"half1": 0.0, "half2": 0.0}
    counts = dict.fromkeys(sums, 0)
    tables = []
    for particles_path, table_path in zip(smk.input.particles, smk.input.tables, strict=True):
        particles, apix = read_mrc(particles_path, mmap=True)
        table = read_table(table_path)
        tables.append(table)
        matrices, shifts = table_poses(table)
        for name, sel in zip(sums, split_even_odd(table), strict=True):
            if sel.any():
                idx = np.flatnonzero(sel)
                avg = average_particles(particles[idx], matrices[idx], shifts[idx], symmetry=n_sym)
                sums[name] = sums[name] + avg * len(idx)
                counts[name] += len(idx)
    # averaging is linear: the full map is the count-weighted sum of the two halves
    sums["all"], counts["all"] = sums["half1"] + sums["half2"], counts["half1"] + counts["half2"]
    maps = {name: -sums[name] / max(counts[name], 1) for name in sums}  # protein-bright
    write_mrc(smk.output.final, maps["all"], apix)
    write_mrc(smk.output.half1, maps["half1"], apix)
    write_mrc(smk.output.half2, maps["half2"], apix)
    write_table(smk.output.table, pd.concat(tables, ignore_index=True))
    box = maps["all"].shape[0]
    mask = soft_spherical_mask(box, radius_px=box * 0.4, edge_px=box * 0.08)
    fsc = fourier_shell_correlation(maps["half1"], maps["half2"], pixel_size_angstrom=apix, mask=mask)
    write_text_atomic(smk.output.fsc, fsc.to_csv(sep="\t", index=False))
    res = {t: describe_resolution(fsc, t) for t in (0.143, 0.5)}
    log.info("%d particles (%d / %d in the halves); gold-standard FSC 0.143: %s, 0.5: %s",
             counts["all"], counts["half1"], counts["half2"], res[0.143], res[0.5])  # fmt: skip
    plot_fsc({"half1 vs half2": fsc}, smk.output.plot)


run_rule(snakemake, main)  # noqa: F821
