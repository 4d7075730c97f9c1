"""Rule final_average: merge tomograms, average all and even/odd halves, gold-standard FSC.

Wedge-compensated averages (params ``wedge_compensation``, ``fmin_fraction``): the Fourier sums of each half are accumulated over all
tomograms and divided once; the full map uses the sum of both halves' sums.
Maps are written protein-bright (contrast inverted from the tomograms), as RELION expects.
"""

import numpy as np

from stasnake.errors import InputError
from stasnake.io.atomic import write_text_atomic
from stasnake.io.dynamo_table import read_table, write_table
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.sta.average import (
    accumulate_particles,
    finish_average,
    tilt_ranges_from_table,
)
from stasnake.sta.fsc import (
    describe_resolution,
    fourier_shell_correlation,
    plot_fsc,
    soft_spherical_mask,
)
from stasnake.sta.poses import symmetry_order, table_poses
from stasnake.sta.table_ops import merge_tables
from stasnake.sta.tables import split_even_odd
from stasnake.sta.transfer import load_particle_transfers
from stasnake.workflow import log, run_rule


def main(smk):
    n_sym = symmetry_order(smk.params.symmetry)
    compensate = bool(smk.params.wedge_compensation)
    fmin_fraction = float(smk.params.fmin_fraction)
    device = smk.params.device
    sums = {"half1": [], "half2": []}
    tables = []
    for particles_path, table_path in zip(smk.input.particles, smk.input.tables, strict=True):
        particles, apix = read_mrc(particles_path, mmap=True)
        table = read_table(table_path)
        tables.append(table)
        matrices, shifts = table_poses(table)
        ranges = tilt_ranges_from_table(table)
        transfers = load_particle_transfers(table, smk.input.transfers, smk.params.transfer_tomos,
                                            particles.shape[-1], apix, source=table_path)  # fmt: skip
        for name, sel in zip(sums, split_even_odd(table), strict=True):
            if sel.any():
                idx = np.flatnonzero(sel)
                views = [particles[i] for i in idx]  # memmap views: read one at a time while accumulating
                part = None if transfers is None else transfers.subset(idx)
                sums[name].append(accumulate_particles(views, matrices[idx], shifts[idx], ranges[idx], device=device,
                                                       transfers=part,
                                                       interpolation_order=smk.params.interpolation_order))  # fmt: skip
    if not sums["half1"] or not sums["half2"]:
        raise InputError("particles tables", "both gold-standard halves (even and odd tags) need particles")
    halves = {name: sum(parts) for name, parts in sums.items()}
    halves["all"] = halves["half1"] + halves["half2"]
    counts = {name: s.count for name, s in halves.items()}
    # protein-bright
    maps = {name: -finish_average(s, n_sym, compensate, fmin_fraction=fmin_fraction)[0] for name, s in halves.items()}
    write_mrc(smk.output.final, maps["all"], apix)
    write_mrc(smk.output.half1, maps["half1"], apix)
    write_mrc(smk.output.half2, maps["half2"], apix)
    # tags repeat across tomograms; merging makes them unique and keeps each particle's half
    write_table(smk.output.table, merge_tables(tables, sources=list(smk.input.tables)))
    box = maps["all"].shape[0]
    mask = soft_spherical_mask(box, radius_px=box * 0.4, edge_px=box * 0.08)
    fsc = fourier_shell_correlation(maps["half1"], maps["half2"], pixel_size_angstrom=apix, mask=mask)
    write_text_atomic(smk.output.fsc, fsc.to_csv(sep="\t", index=False))
    res = {t: describe_resolution(fsc, t) for t in (0.143, 0.5)}
    log.info("%d particles (%d / %d in the halves); gold-standard FSC 0.143: %s, 0.5: %s",
             counts["all"], counts["half1"], counts["half2"], res[0.143], res[0.5])  # fmt: skip
    plot_fsc({"half1 vs half2": fsc}, smk.output.plot)


run_rule(snakemake, main)  # noqa: F821
