"""Rule half_maps (protocol step 9): the even half aligned to the odd one, half-maps, final map.

The refined half averages are aligned (half 1 onto half 2, no wedge: both are maps); the
transform moves the half-1 table (Dynamo ``dynamo_table_rigid``), and both halves are
re-averaged with missing-wedge compensation and C6 symmetry. ``final.mrc`` is the average of
all particles (the sums of both halves). Maps are written protein-bright, as RELION expects,
with RELION's names; the FSC between the half-maps is computed under a soft sphere and under
the tight mask of step 8B.
"""

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.io.atomic import write_text_atomic
from stasnake.io.dynamo_table import read_table, write_table
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.sta.average import accumulate_particles, finish_average, tilt_ranges_from_table
from stasnake.sta.fsc import (
    describe_resolution,
    fourier_shell_correlation,
    plot_fsc,
    soft_spherical_mask,
)
from stasnake.sta.map_alignment import align_half_maps
from stasnake.sta.poses import symmetry_order, table_poses
from stasnake.sta.project import ParticleStacks
from stasnake.sta.table_ops import rigid_transform
from stasnake.sta.tables import half_set
from stasnake.sta.transfer import load_particle_transfers
from stasnake.workflow import log, run_rule


def main(smk):
    table = read_table(smk.input.table)
    table = table[table["averaged_value"] != 0].reset_index(drop=True)
    index = pd.read_csv(smk.input.index)
    row_of_tag = dict(zip(index["tag"], index["row"], strict=True))
    half1_map, apix = read_mrc(smk.input.half1)
    half2_map, _ = read_mrc(smk.input.half2)
    mask, _ = read_mrc(smk.input.mask)
    rotation, shift, cc = align_half_maps(half1_map, half2_map, apix, mask=mask)
    angle = np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))
    log.info("half 1 aligned to half 2: rotation %.2f deg, shift (%.2f, %.2f, %.2f) px, CC %.3f", angle, *shift, cc)
    halves = half_set(table["tag"].to_numpy())
    parts = {1: rigid_transform(table[halves == 1], rotation, shift, source=smk.input.table),
             2: table[halves == 2].copy()}  # fmt: skip
    if any(len(p) == 0 for p in parts.values()):
        raise InputError(smk.input.table, "both gold-standard halves (even and odd tags) need particles")
    sums = {}
    for h, part in parts.items():
        rows = part["tag"].map(row_of_tag).to_numpy()
        matrices, shifts = table_poses(part)
        transfers = load_particle_transfers(part, smk.input.transfers, smk.params.transfer_tomos, half1_map.shape[-1],
                                            apix, source=smk.input.table)  # fmt: skip
        sums[h] = accumulate_particles(ParticleStacks(index, rows), matrices, shifts, tilt_ranges_from_table(part),
                                       device=smk.params.device, pixel_size_angstrom=apix, transfers=transfers,
                                       interpolation_order=smk.params.interpolation_order)  # fmt: skip
    n_sym = symmetry_order(smk.params.symmetry)
    fmin = smk.params.fmin_fraction

    def finish(s):  # protein-bright
        return -finish_average(s, n_sym, True, fmin_fraction=fmin)[0]

    maps = {"half1": finish(sums[1]), "half2": finish(sums[2]), "final": finish(sums[1] + sums[2])}
    write_mrc(smk.output.half1, maps["half1"], apix)
    write_mrc(smk.output.half2, maps["half2"], apix)
    write_mrc(smk.output.final, maps["final"], apix)
    write_table(smk.output.table, pd.concat([parts[1], parts[2]]).sort_values("tag").reset_index(drop=True))
    box = maps["final"].shape[0]
    sphere = soft_spherical_mask(box, radius_px=box * 0.4, edge_px=box * 0.08)
    fsc = fourier_shell_correlation(maps["half1"], maps["half2"], pixel_size_angstrom=apix, mask=sphere)
    tight = fourier_shell_correlation(maps["half1"], maps["half2"], pixel_size_angstrom=apix, mask=mask)
    fsc["fsc_tight_mask"] = tight["fsc"].to_numpy()
    write_text_atomic(smk.output.fsc, fsc.to_csv(sep="\t", index=False))
    log.info("%d particles (%d / %d in the halves); FSC 0.143: %s (sphere), %s (tight mask)", len(table),
             len(parts[1]), len(parts[2]), describe_resolution(fsc, 0.143), describe_resolution(tight, 0.143))  # fmt: skip
    plot_fsc({"half1 vs half2 (soft sphere)": fsc, "half1 vs half2 (tight mask)": tight}, smk.output.plot)


run_rule(snakemake, main)  # noqa: F821
