"""Rule sta_align_chunk: align one chunk of a project's particles against the previous iteration's average."""

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.geometry.euler import matrix_to_dynamo_euler
from stasnake.io.dynamo_table import read_table, write_table
from stasnake.io.mrc import read_mrc
from stasnake.sta.align import align_particles, prepare_reference, score_particles
from stasnake.sta.average import symmetrize_cn, tilt_ranges_from_table
from stasnake.sta.masks import lattice_layer_mask
from stasnake.sta.poses import table_poses
from stasnake.sta.project import ParticleStacks, chunk_rows
from stasnake.sta.transfer import load_particle_transfers
from stasnake.workflow import log, run_rule


def main(smk):
    project = smk.params.project
    k = int(smk.wildcards.k)
    rnd = project.round_of(k)
    table = read_table(smk.input.table)
    index = pd.read_csv(smk.input.index)
    rows = chunk_rows(table, smk.wildcards.half, int(smk.wildcards.chunk), project.chunk_size)
    chunk = table.iloc[rows].copy()
    active = chunk["aligned_value"].to_numpy() != 0
    log.info("iteration %d (round %d), chunk %s/%s: %d particles, %d to align", k, project.round_index(k) + 1,
             smk.wildcards.half, smk.wildcards.chunk, len(chunk), int(active.sum()))  # fmt: skip
    if active.any():
        reference, apix = read_mrc(smk.input.reference)
        if rnd.symmetry_order > 1:
            reference = symmetrize_cn(reference, rnd.symmetry_order)
        if rnd.mask == "none":
            mask = None
        elif rnd.mask == "lattice":
            try:
                mask = lattice_layer_mask(reference, apix, smk.params.lattice_spacing_angstrom,
                                          smk.params.lattice_side)  # fmt: skip
                column = np.flatnonzero(mask[:, mask.shape[1] // 2, mask.shape[2] // 2] > 0.5)
                log.info("alignment mask: the lattice layer %s the membrane of the reference, z %d..%d px",
                         smk.params.lattice_side, column[0], column[-1])  # fmt: skip
            except InputError as exc:  # no membrane band where a lattice fits: align on the whole map
                mask = None
                log.warning("no lattice-layer mask (%s): this iteration aligns with the whole map", exc)
        else:
            mask = read_mrc(smk.input.mask)[0] if smk.input.mask else None
        params = rnd.search_params()
        prepared = prepare_reference(reference, params, alignment_mask=mask)
        act = chunk[active]
        matrices, shifts = table_poses(act)
        tilt_ranges = tilt_ranges_from_table(act)
        centres = np.zeros_like(shifts)
        if smk.input.origin:
            origin = read_table(smk.input.origin).set_index("tag")
            centres = origin.loc[act["tag"], ["dx", "dy", "dz"]].to_numpy()
        particles = ParticleStacks(index, rows[active])
        transfers = None  # rules/common.smk refuses ctf_scores without the transfer models
        if rnd.ctf_scores:
            transfers = load_particle_transfers(act, smk.input.transfers, smk.params.transfer_tomos,
                                                reference.shape[-1], apix, source=smk.input.table)  # fmt: skip
        result = align_particles(particles, matrices, shifts, tilt_ranges, prepared, params,
                                 shift_centres_xyz=centres, device=smk.params.device, transfers=transfers)  # fmt: skip
        eulers = matrix_to_dynamo_euler(result.matrices).reshape(-1, 3)
        chunk.loc[active, ["dx", "dy", "dz"]] = result.shifts_xyz
        chunk.loc[active, ["tdrot", "tilt", "narot"]] = eulers
        chunk.loc[active, "cc"] = result.cc
        if smk.input.classification_mask:
            cmask, _ = read_mrc(smk.input.classification_mask)
            chunk.loc[active, "cc2"] = score_particles(particles, result.matrices, result.shifts_xyz, tilt_ranges,
                                                       prepared, params, mask=cmask, transfers=transfers)  # fmt: skip
        log.info("%d orientation evaluations; CC median %.4f (%.4f..%.4f)", result.n_evaluated,
                 float(np.median(result.cc)), float(result.cc.min()), float(result.cc.max()))  # fmt: skip
    write_table(smk.output.table, chunk)


run_rule(snakemake, main)  # noqa: F821
