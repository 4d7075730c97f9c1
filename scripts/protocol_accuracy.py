"""Rule protocol_accuracy: the protocol's particles and poses against the synthetic truth.

Picking: recall and precision of each stage's particles (oversampled crop points, subboxed
candidates, after cleaning, after the latitude filter, final) against the true lattice units,
within a quarter of the lattice spacing. Poses: the final map is aligned onto the true unit
map; the transform moves every particle into the truth's frame (the protocol's frame is set
by the user's clicks), and the angle (modulo C6) and centre distance to the matched true unit
are reported.
"""

import numpy as np
import pandas as pd

from stasnake.io.atomic import write_text_atomic
from stasnake.io.dynamo_table import particle_positions, read_table
from stasnake.io.mrc import read_mrc
from stasnake.sta.map_alignment import align_to_truth
from stasnake.sta.table_ops import rigid_transform
from stasnake.sta.validate import centre_crop
from stasnake.validation.accuracy import match_to_truth, pose_errors
from stasnake.workflow import log, run_rule

STAGES = ("oversampled", "subboxed", "cleaned", "selected")


def main(smk):
    apix = float(read_mrc(smk.input.final)[1])
    radius = 0.25 * smk.params.lattice_spacing_angstrom / apix
    final_table = read_table(smk.input.final_table)
    final, _ = read_mrc(smk.input.final)
    truth_map, _ = read_mrc(smk.input.truth_map)
    box = min(final.shape[0], truth_map.shape[0])
    _, rotation, shift = align_to_truth(centre_crop(final, box), centre_crop(truth_map, box), apix)
    in_truth_frame = rigid_transform(final_table, rotation, shift, source=smk.input.final_table)
    log.info("final map onto the truth: rotation %.2f deg, shift (%.2f, %.2f, %.2f) px",
             np.degrees(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1))), *shift)  # fmt: skip
    picking, poses = [], []
    for i, ts in enumerate(smk.params.names):
        truth = read_table(smk.input.truth[i])
        for stage in STAGES:
            found = read_table(getattr(smk.input, stage)[i])
            m = match_to_truth(particle_positions(found), particle_positions(truth), radius)
            picking.append({"tilt_series": ts, "stage": stage, **{k: m[k] for k in ("n_found", "n_truth", "recall",
                                                                                       "precision", "duplicates")}})
        tomo = int(truth["tomo"].iloc[0])
        for stage, table in (("final", final_table), ("final_in_truth_frame", in_truth_frame)):
            rows = table[table["tomo"] == tomo]
            m = match_to_truth(particle_positions(rows), particle_positions(truth), radius)
            picking.append({"tilt_series": ts, "stage": stage, **{k: m[k] for k in ("n_found", "n_truth", "recall",
                                                                                       "precision", "duplicates")}})
        errors = pose_errors(in_truth_frame[in_truth_frame["tomo"] == tomo], truth, radius, symmetry_order=6)
        poses.append(errors.assign(tilt_series=ts))
    picking = pd.DataFrame(picking)
    totals = picking.groupby("stage", sort=False)[["n_found", "n_truth"]].sum().reset_index()
    for stage in totals["stage"]:
        rows = picking[picking["stage"] == stage]
        log.info("%-22s found %5d, recall %.3f, precision %.3f (per tilt series: %s)", stage, rows["n_found"].sum(),
                 np.average(rows["recall"], weights=rows["n_truth"]),
                 np.average(rows["precision"], weights=np.maximum(rows["n_found"], 1)),
                 ", ".join(f"{r.recall:.2f}/{r.precision:.2f}" for r in rows.itertuples()))  # fmt: skip
    poses = pd.concat(poses, ignore_index=True)
    log.info("final poses (%d matched): median angle error %.2f deg, median centre error %.2f px", len(poses),
             poses["angle_deg"].median(), poses["shift_px"].median())  # fmt: skip
    write_text_atomic(smk.output.picking, picking.to_csv(sep="\t", index=False))
    write_text_atomic(smk.output.poses, poses.to_csv(sep="\t", index=False))


run_rule(snakemake, main)  # noqa: F821
