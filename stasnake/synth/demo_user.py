"""The simulated user of the synthetic demo: answers the workflow's annotation requests.

The protocol stops three times for a person: dipoles on every VLP (step 2A), the particle
centre in the initial reference (step 3B) and the lattice unit centres in the average of
averages (step 5B). On the synthetic demo this module plays that person: it writes each
missing file into ``annotations/`` once the map to mark exists, with realistic click errors
(dipole centres and radii off by several pixels; markers off by about a pixel), then the
workflow is rerun. It reads the ground truth as a user reads the map: the VLPs from the
generator's list, the units by recognising the true unit in the map
(:func:`stasnake.synth.click_markers.click_unit_centres`).

:func:`run_demo` alternates workflow runs and annotation rounds, which is exactly what a
user does: run, read the message, annotate, rerun.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from stasnake.annotations import ANNOTATION_STEPS, annotation_path, dipole_binning
from stasnake.errors import InputError
from stasnake.io.mrc import read_mrc

#: Set names of the marker files the simulated user writes.
_MARKER_SETS = {"reference_center": "reference center", "particle_centers": "particle centers"}


def _manifest(dataset_dir: Path) -> dict:
    path = dataset_dir / "truth" / "manifest.json"
    if not path.is_file():
        raise InputError(path, "not found: is this a stasnake synth data set?")
    return json.loads(path.read_text())


def true_unit_centres(
    tables, truth_tables, box: int, spacing_px: float, min_fraction: float = 0.3, frames=None
) -> np.ndarray:
    """Where the true lattice units lie in an average, from the particles' poses.

    Every true unit near a particle is carried into the average's frame by that particle's
    pose (``p = R^T (u - x - s) + c``, and further by ``frames``); units that the alignment
    made coincide pile up. The piles (at least ``min_fraction`` of the largest, at least 0.6
    spacing apart, inside the box) are the units a user sees in the average.

    Parameters
    ----------
    tables, truth_tables : sequence of pd.DataFrame
        Per tomogram: the table the average was made with, and the true units (Dynamo tables).
    box : int
        Side of the average, pixels.
    spacing_px : float
        Lattice spacing, pixels.
    min_fraction : float
        Smallest pile kept, relative to the largest.
    frames : sequence of (R, s), optional
        Per tomogram, the pose of its average in a merged map (``average(R p + c + s) =
        merged(p + c)``): the points are carried on into the merged map.

    Returns
    -------
    np.ndarray
        (k, 3) 1-based pixels (x, y, z) of the average, the pile nearest the box centre first.
    """
    from scipy import ndimage
    from scipy.spatial import cKDTree

    from stasnake.io.dynamo_table import particle_positions
    from stasnake.sta.poses import table_poses

    c = np.full(3, box // 2, dtype=np.float64)
    points = []
    for j, (table, truth) in enumerate(zip(tables, truth_tables, strict=True)):
        used = table[table["averaged_value"] != 0] if "averaged_value" in table else table
        rotations, _ = table_poses(used)
        centres = particle_positions(used)
        units = particle_positions(truth)
        tree = cKDTree(units)
        for r, x, near in zip(rotations, centres, tree.query_ball_point(centres, box * 0.75), strict=True):
            if not near:
                continue
            p = (units[near] - x) @ r + c  # R^T (u - x) + c, rows
            if frames is not None:
                rf, sf = frames[j]
                p = (p - c - np.asarray(sf)) @ np.asarray(rf) + c
            points.append(p)
    points = np.concatenate(points) if points else np.zeros((0, 3))
    inside = points[np.all((points >= 0) & (points <= box - 1), axis=1)]
    if len(inside) == 0:
        raise InputError("average", "no true unit falls inside the average")
    idx = np.round(inside).astype(int)
    hist = np.zeros((box, box, box))
    np.add.at(hist, (idx[:, 2], idx[:, 1], idx[:, 0]), 1.0)
    hist = ndimage.gaussian_filter(hist, 1.0)
    peaks = (hist == ndimage.maximum_filter(hist, size=3)) & (hist >= min_fraction * hist.max())
    zyx = np.argwhere(peaks)
    order = np.argsort(-hist[peaks])
    kept = []
    for p in zyx[order][:, ::-1].astype(np.float64):
        if all(np.linalg.norm(p - q) >= 0.6 * spacing_px for q in kept):
            kept.append(p)
    tree = cKDTree(inside)
    refined = []
    for p in kept:  # centroid of the pile
        near = inside[tree.query_ball_point(p, 2.0)]
        refined.append(near.mean(axis=0) if len(near) else p)
    refined = np.array(refined)
    refined = refined[np.argsort(np.linalg.norm(refined - c, axis=1))]
    return refined + 1.0


def _click_errors(n: int, rms_px: float, rng: np.random.Generator) -> np.ndarray:
    """Isotropic 3-D click errors of RMS length ``rms_px``."""
    return rng.normal(scale=rms_px / np.sqrt(3.0), size=(n, 3))


def _last_table(workdir: Path, project: str) -> Path:
    iterations = sorted((workdir / "results" / "sta" / project).glob("ite_[0-9][0-9][0-9][0-9]"))
    return iterations[-1] / "table.tbl"


def _map_particles(workdir: Path, dataset_dir: Path, kind: str, tilt_series):
    """The tables a marker step's map was averaged from, the true units, and the frames."""
    from stasnake.geometry.euler import dynamo_euler_to_matrix
    from stasnake.io.dynamo_table import read_table

    if kind == "reference_center":
        ts = pd.read_csv(workdir / "results" / "sta" / "protocol_reference" / "particles.csv")["ts"].iloc[0]
        table = read_table(_last_table(workdir, "protocol_reference"))
        return [table], [read_table(dataset_dir / "truth" / ts / "particles.tbl")], None
    merged = read_table(workdir / "results" / "reference" / "average_of_averages.tbl")
    tables, truths, frames = [], [], []
    for ts, row in zip(tilt_series, merged.itertuples(), strict=True):
        tables.append(read_table(_last_table(workdir, f"protocol_tomogram_{ts}")))
        truths.append(read_table(dataset_dir / "truth" / ts / "particles.tbl"))
        r = dynamo_euler_to_matrix(np.array([row.tdrot, row.tilt, row.narot])).reshape(3, 3)
        frames.append((r, np.array([row.dx, row.dy, row.dz])))
    return tables, truths, frames


def annotate_missing(
    workdir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    tilt_series,
    config_like=None,
    seed: int = 0,
    centre_error_px: float = 3.0,
    radius_error_px: float = 2.0,
    click_error_px: float = 1.0,
) -> list[Path]:
    """Write every annotation the workflow lacks whose map exists; return the files written.

    Parameters
    ----------
    workdir : str or PathLike
        The workflow's working directory (``annotations/`` and ``results/`` inside it).
    dataset_dir : str or PathLike
        The synthetic data set (``truth/manifest.json``, ``truth/{ts}/vlps.csv``,
        ``truth/unit_map.mrc``).
    tilt_series : sequence of str
        The tilt series of the sample list.
    config_like : mapping, optional
        The workflow configuration (dipole binning).
    seed : int
        Random seed of the click errors (one stream per file).
    centre_error_px, radius_error_px : float
        Dipole click errors, binned pixels (:func:`stasnake.synth.annotations.simulate_dipoles`).
    click_error_px : float
        RMS error of a marker click, pixels of the map.
    """
    from stasnake.synth.annotations import simulate_dipoles, write_dipoles
    from stasnake.synth.click_markers import write_clicks

    workdir, dataset_dir = Path(workdir), Path(dataset_dir)
    manifest = _manifest(dataset_dir)
    binning = dipole_binning(config_like)
    written: list[Path] = []
    for i, ts in enumerate(tilt_series):
        path = workdir / annotation_path("dipoles", ts, "annotations", config_like)
        binned = workdir / ANNOTATION_STEPS["dipoles"].map_path.format(ts=ts, binning=binning)
        if path.exists() or not binned.is_file():  # clicked in the binned tomogram
            continue
        vlps = pd.read_csv(dataset_dir / "truth" / ts / "vlps.csv")
        rng = np.random.default_rng([seed, 1, i])
        write_dipoles(path, simulate_dipoles(vlps, rng, centre_error_px, radius_error_px, binning), binning)
        written.append(path)
    spacing = float(manifest["config"]["lattice_spacing_angstrom"])
    for j, kind in enumerate(("reference_center", "particle_centers")):
        path = workdir / annotation_path(kind, None, "annotations", config_like)
        map_path = workdir / ANNOTATION_STEPS[kind].map_path
        if path.exists() or not map_path.is_file():
            continue
        volume, apix = read_mrc(map_path)
        tables, truths, frames = _map_particles(workdir, dataset_dir, kind, tilt_series)
        xyz = true_unit_centres(tables, truths, volume.shape[0], spacing / apix, frames=frames)
        if kind == "reference_center":
            xyz = xyz[:1]
        else:  # whole units only, as the protocol asks: centres a third of a spacing inside
            margin = spacing / apix / 3
            xyz = xyz[np.all((xyz >= 1 + margin) & (xyz <= volume.shape[0] - margin), axis=1)]
        rng = np.random.default_rng([seed, 2, j])
        xyz = xyz + _click_errors(len(xyz), click_error_px, rng)
        write_clicks(path, xyz, apix, _MARKER_SETS[kind])
        written.append(path)
    return written


def run_demo(
    dataset_dir: str | os.PathLike = "demo",
    workdir: str | os.PathLike = ".",
    snakemake_args=("--profile", "profiles/local"),
    seed: int = 0,
    max_rounds: int = 5,
) -> int:
    """Run the workflow, answer its annotation requests as the simulated user, rerun; repeat.

    Returns the exit status of the last workflow run (0 when everything was made).
    """
    import yaml

    workdir = Path(workdir)
    config = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    samples = pd.read_csv(workdir / config["samples"], sep="\t", comment="#")
    tilt_series = list(samples["name"])
    status = 0
    for round_ in range(1, max_rounds + 1):
        cmd = [sys.executable, "-m", "snakemake", *snakemake_args]
        print(f"[simulated user] round {round_}: {' '.join(cmd[2:])}", flush=True)
        status = subprocess.run(cmd, cwd=workdir).returncode
        if status != 0:
            break
        written = annotate_missing(workdir, dataset_dir, tilt_series, config, seed)
        for path in written:
            print(f"[simulated user] wrote {path}", flush=True)
        if not written:  # nothing was missing: the run made everything
            break
    return status
