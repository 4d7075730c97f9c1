"""Accuracy of picked particles and their poses against a known lattice (synthetic ground truth).

Positions are compared in full-size tomogram pixels (1-based x, y, z with the table shifts
applied); poses modulo the symmetry about the particle z axis. A map whose frame differs from
the truth map's by ``(R_t, s_t)`` (``map(R_t p + c + s_t) = truth(p + c)``, e.g. from
:func:`stasnake.sta.map_alignment.align_to_truth`) is compared after moving every particle by
that transform (:func:`stasnake.sta.table_ops.rigid_transform`), so that its pose and centre
refer to the truth map's frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from stasnake.io.dynamo_table import particle_positions
from stasnake.sta.angles import rotation_distance_deg
from stasnake.sta.poses import table_poses
from stasnake.sta.rotate import rotation_about_z


def match_to_truth(found_xyz, truth_xyz, radius_px: float) -> dict:
    """Recall and precision of found positions against true ones within ``radius_px``.

    Parameters
    ----------
    found_xyz, truth_xyz : array_like
        (n, 3) and (m, 3) positions, pixels (x, y, z).
    radius_px : float
        Match distance (a quarter of the lattice spacing in the protocol's acceptance).

    Returns
    -------
    dict
        ``n_found``, ``n_truth``, ``recall`` (true units with a found particle within the
        radius), ``precision`` (found particles within the radius of a true unit),
        ``duplicates`` (found particles beyond the first on the same unit), ``nearest`` ((n,)
        index of each found particle's nearest true unit) and ``distance_px`` ((n,)).
    """
    found = np.asarray(found_xyz, dtype=np.float64).reshape(-1, 3)
    truth = np.asarray(truth_xyz, dtype=np.float64).reshape(-1, 3)
    if len(found) == 0 or len(truth) == 0:
        return {"n_found": len(found), "n_truth": len(truth), "recall": 0.0, "precision": 0.0,
                "duplicates": 0, "nearest": np.zeros(0, int), "distance_px": np.zeros(0)}  # fmt: skip
    distance, nearest = cKDTree(truth).query(found)
    hit = distance < radius_px
    covered = np.unique(nearest[hit])
    return {
        "n_found": len(found), "n_truth": len(truth), "recall": covered.size / len(truth),
        "precision": float(hit.mean()), "duplicates": int(hit.sum() - covered.size),
        "nearest": nearest, "distance_px": distance,
    }  # fmt: skip


def pose_errors(table: pd.DataFrame, truth: pd.DataFrame, radius_px: float, symmetry_order: int = 1) -> pd.DataFrame:
    """Angular and shift error of every particle that lies within ``radius_px`` of a true unit.

    Parameters
    ----------
    table, truth : pd.DataFrame
        Dynamo tables of one tomogram (the particles, in the truth map's frame; the truth).
    radius_px : float
        Match distance, pixels.
    symmetry_order : int
        n of the Cn symmetry about z: the smallest angle over the n equivalent poses counts.

    Returns
    -------
    pd.DataFrame
        One row per matched particle: ``tag``, ``truth_tag``, ``angle_deg`` and
        ``shift_px`` (distance between the centres).
    """
    match = match_to_truth(particle_positions(table), particle_positions(truth), radius_px)
    hit = match["distance_px"] < radius_px
    est, _ = table_poses(table)
    true, _ = table_poses(truth)
    est, true_hit = est[hit], true[match["nearest"][hit]]
    angles = np.min([rotation_distance_deg(est @ rotation_about_z(360.0 * k / symmetry_order), true_hit)
                     for k in range(int(symmetry_order))], axis=0) if hit.any() else np.zeros(0)  # fmt: skip
    return pd.DataFrame({
        "tag": table["tag"].to_numpy()[hit], "truth_tag": truth["tag"].to_numpy()[match["nearest"][hit]],
        "angle_deg": angles, "shift_px": match["distance_px"][hit],
    })  # fmt: skip
