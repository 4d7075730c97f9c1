"""Write a complete synthetic data set with ground truth (see :func:`generate_dataset`)."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from pathlib import Path

import numba
import numpy as np
import pandas as pd

import stasnake
from stasnake.geometry.euler import matrix_to_dynamo_euler
from stasnake.io.atomic import atomic_output, write_text_atomic
from stasnake.io.ctffind import ctf_table_to_imod_defocus
from stasnake.io.dynamo_table import new_table, write_table
from stasnake.io.imod import write_defocus, write_tlt, write_xf
from stasnake.io.mdoc import write_mdoc
from stasnake.io.mrc import write_mrc
from stasnake.synth.config import SynthConfig
from stasnake.synth.movies import simulate_movie
from stasnake.synth.phantom import add_ice, place_fiducials, place_vlps, render_specimen
from stasnake.synth.tiltseries import simulate_tiltseries, tilt_angles
from stasnake.synth.unit import unit_map


def _write_csv(path: Path, df: pd.DataFrame) -> None:
    with atomic_output(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


def _particle_table(vlps, shape_zyx, series: int, config: SynthConfig, defocus_angstrom: float) -> pd.DataFrame:
    nz, ny, nx = shape_zyx
    pos = np.concatenate([v["positions_px"] for v in vlps]) + np.array([nx // 2, ny // 2, nz // 2]) + 1.0
    mats = np.concatenate([v["matrices"] for v in vlps])
    reg = np.concatenate([np.full(len(v["positions_px"]), i + 1) for i, v in enumerate(vlps)])
    e = matrix_to_dynamo_euler(mats)
    return new_table(
        len(pos), x=pos[:, 0], y=pos[:, 1], z=pos[:, 2], tdrot=e[:, 0], tilt=e[:, 1], narot=e[:, 2],
        tomo=series, reg=reg, apix=config.pixel_size_angstrom, ymintilt=config.tilt_min_deg,
        ymaxtilt=config.tilt_max_deg, **{"def": defocus_angstrom * 1e-4},
    )  # fmt: skip


def _mdoc(name: str, ts: dict, shape_zyx, config: SynthConfig) -> tuple[dict, pd.DataFrame]:
    _, ny, nx = shape_zyx
    header = {
        "PixelSpacing": float(config.pixel_size_angstrom), "ImageFile": f"{name}.mrc",
        "ImageSize": (nx, ny), "DataMode": 2, "Voltage": float(config.voltage_kv),
        "titles": ["SerialEM: stasnake synthetic data (ground truth in ../truth)",
                   f"Tilt axis angle = {config.tilt_axis_angle_deg}, binning = 1  spot = 8  camera = 0"],
    }  # fmt: skip
    order = ts["order"]
    start = datetime.datetime(2015, 11, 30, 15, 21, 38)
    target = -round(ts["defocus_angstrom"] * 1e-4 * 4) / 4  # SerialEM target, negative µm, 0.25 µm steps
    sections = pd.DataFrame({
        "ZValue": np.arange(len(order)),
        "TiltAngle": ts["tilt_angles_deg"][order],
        "ExposureDose": float(config.dose_per_tilt_e_per_A2),
        "PixelSpacing": float(config.pixel_size_angstrom),
        "TargetDefocus": float(target),
        "Binning": 1,
        "DateTime": [(start + datetime.timedelta(seconds=60 * k)).strftime("%d-%b-%y  %H:%M:%S") for k in range(len(order))],
    })  # fmt: skip
    if config.movie_frames > 0:
        sections["SubFramePath"] = ["X:\\synthetic\\frames\\" + f for f in movie_names(name, ts, config)]
        sections["NumSubFrames"] = config.movie_frames
        sections["FrameDosesAndNumber"] = f"{config.dose_per_tilt_e_per_A2 / config.movie_frames:.5g} {config.movie_frames}"
    return header, sections


GAIN_FLIP = "y"  # the synthetic gain file is stored upside down: motion correction needs flip "y"


def movie_names(name: str, ts: dict, config: SynthConfig) -> list[str]:
    """Movie file names in acquisition order, SerialEM style ``{ts}_{index:03d}_{tilt:.1f}.mrc``."""
    return [f"{name}_{k:03d}_{ts['tilt_angles_deg'][i]:.1f}.mrc" for k, i in enumerate(ts["order"])]


def synthetic_gain(shape_yx, seed: int) -> np.ndarray:
    """A camera gain reference in frame orientation: 5 % pixel-to-pixel variation plus a smooth ramp."""
    rng = np.random.default_rng([seed, 0, 1])
    ny, nx = shape_yx
    ramp = 0.1 * np.linspace(-1.0, 1.0, nx)[None, :] + 0.05 * np.linspace(-1.0, 1.0, ny)[:, None]
    return (1.0 + ramp + 0.05 * rng.standard_normal((ny, nx))).astype(np.float32)


def _write_movies(outdir: Path, name: str, k: int, ts: dict, config: SynthConfig, gain: np.ndarray) -> None:
    """Each noise-free raw image as a drifting Poisson movie; the drift truth in truth/{name}/drift.csv.

    The expected counts of the frames sum to the raw image's (dose and
    attenuation as in the stack); a separate random stream keeps the rest of
    the data set identical with and without movies.
    """
    rng = np.random.default_rng([config.seed, k, 2])
    px = config.pixel_size_angstrom
    rows = []
    for z, (filename, image) in enumerate(zip(movie_names(name, ts, config), ts["raw_noise_free"], strict=True)):
        dose_per_frame = float(image.mean()) / config.movie_frames / px**2
        frames, shifts = simulate_movie(image, config.movie_frames, dose_per_frame, px, config.movie_drift_px, rng, gain)
        write_mrc(outdir / "tiltseries" / "frames" / filename, frames, px, stack=True)
        rows.append(pd.DataFrame({"z_value": z, "frame": np.arange(len(shifts)), "dx_px": shifts[:, 0],
                                  "dy_px": shifts[:, 1]}))  # fmt: skip
    _write_csv(outdir / "truth" / name / "drift.csv", pd.concat(rows, ignore_index=True))


def _write_series(outdir: Path, k: int, config: SynthConfig, unit: np.ndarray, rng: np.random.Generator,
                  gain: np.ndarray | None) -> dict:
    name = f"TS_{k:02d}"
    px = config.pixel_size_angstrom
    shape = tuple(config.tomogram_shape_zyx)
    nz, ny, nx = shape
    angles = tilt_angles(config)
    vlps = place_vlps(config, rng, angles)
    beads = place_fiducials(config, rng, angles, vlps)
    specimen = render_specimen(config, unit, vlps, beads)
    ts = simulate_tiltseries(specimen, config, rng)
    truth = outdir / "truth" / name
    write_mrc(outdir / "tiltseries" / f"{name}.mrc", ts["raw"], px, stack=True)
    write_mdoc(outdir / "tiltseries" / f"{name}.mrc.mdoc", *_mdoc(name, ts, shape, config))
    if config.movie_frames > 0:
        _write_movies(outdir, name, k, ts, config, gain)
    table = _particle_table(vlps, shape, k, config, ts["defocus_angstrom"])
    write_table(truth / "particles.tbl", table)
    centre = np.array([nx // 2, ny // 2, nz // 2]) + 1.0
    _write_csv(truth / "vlps.csv", pd.DataFrame({
        "vlp_id": np.arange(1, len(vlps) + 1),
        **{a: [v["centre_px"][i] + centre[i] for v in vlps] for i, a in enumerate("xyz")},
        "radius_px": [v["radius_angstrom"] / px for v in vlps],
        "lattice_radius_px": [v["lattice_radius_angstrom"] / px for v in vlps],
        "n_units": [len(v["positions_px"]) for v in vlps],
        "coverage": [v["coverage"] for v in vlps],
    }))  # fmt: skip
    _write_csv(truth / "fiducials.csv", pd.DataFrame({
        **{a: beads[:, i] + centre[i] for i, a in enumerate("xyz")},
        "diameter_px": config.bead_diameter_angstrom / px,
    }))  # fmt: skip
    write_xf(truth / "alignment.xf", ts["xf"])
    write_tlt(truth / "tilt_angles.tlt", ts["tilt_angles_deg"])
    ctf_truth = pd.DataFrame({
        "tilt_angle_deg": ts["tilt_angles_deg"], "acquisition_index": ts["acquisition_index"],
        "pre_exposure_e_per_A2": ts["pre_exposure"], "defocus_u_angstrom": ts["defocus_u"],
        "defocus_v_angstrom": ts["defocus_v"], "astigmatism_angle_deg": ts["astigmatism_angle_deg"],
    })  # fmt: skip
    _write_csv(truth / "ctf.csv", ctf_truth)
    write_defocus(truth / "ctf.defocus", ctf_table_to_imod_defocus(ctf_truth))  # the same truth in IMOD form
    add_ice(specimen, config.ice_thickness / px, config.ice_density)
    write_mrc(truth / "phantom.mrc", specimen, px)
    return {
        "name": name, "n_particles": len(table), "n_vlps": len(vlps), "n_fiducials": len(beads),
        "n_tilts": int(ts["tilt_angles_deg"].size), "stack_shape": list(ts["raw"].shape),
        "defocus_angstrom": float(ts["defocus_angstrom"]), "contrast_scale": ts["contrast"],
        "max_contrast": ts["max_contrast"], "snr_first_image": ts["snr_measured"],
    }  # fmt: skip


def generate_dataset(outdir: str | os.PathLike, config: SynthConfig) -> dict:
    """Generate a synthetic cryo-ET data set with ground truth.

    Parameters
    ----------
    outdir : str or PathLike
        Output folder. Written: ``tomograms.tsv`` (name, tilt_series, mdoc;
        paths relative to ``outdir``), ``tiltseries/TS_NN.mrc`` (raw stacks in
        acquisition order, float32, counts) with ``.mrc.mdoc``, and
        ``truth/``: ``unit_map.mrc``, ``manifest.json`` and per series
        ``TS_NN/{particles.tbl, vlps.csv, fiducials.csv, alignment.xf,
        tilt_angles.tlt, ctf.csv, ctf.defocus, phantom.mrc}`` (per-tilt files in sorted
        tilt order; table and csv positions 1-based pixels of the phantom /
        tomogram box). With ``config.movie_frames > 0`` also
        ``tiltseries/frames/`` (one MRC movie per tilt, named in the mdoc's
        ``SubFramePath``, and ``gain.mrc``, stored flipped upside down:
        correct with flip ``"y"``) and ``truth/TS_NN/drift.csv`` (per mdoc
        ``z_value`` and frame, the content shift ``dx_px, dy_px``).
    config : SynthConfig
        All parameters, including the seed.

    Returns
    -------
    dict
        The manifest (also written to ``truth/manifest.json``).
    """
    outdir = Path(outdir)
    rng = np.random.default_rng(config.seed)
    unit = unit_map(config.unit_box_px, config.pixel_size_angstrom, config.lattice_spacing_angstrom)
    write_mrc(outdir / "truth" / "unit_map.mrc", unit, config.pixel_size_angstrom)
    gain = None
    if config.movie_frames > 0:
        gain = synthetic_gain(config.tomogram_shape_zyx[1:], config.seed)
        write_mrc(outdir / "tiltseries" / "frames" / "gain.mrc", gain[::-1], config.pixel_size_angstrom)
    series = [_write_series(outdir, k, config, unit, rng, gain) for k in range(1, config.n_tiltseries + 1)]
    rows = [f"{s['name']}\ttiltseries/{s['name']}.mrc\ttiltseries/{s['name']}.mrc.mdoc\n" for s in series]
    write_text_atomic(outdir / "tomograms.tsv", "name\ttilt_series\tmdoc\n" + "".join(rows))
    manifest = {
        "generator": "stasnake.synth.generate_dataset",
        "paths_relative_to": "the output folder (the folder holding tomograms.tsv)",
        "seed": config.seed,
        "config": dataclasses.asdict(config),
        "tomogram_shape_zyx": list(config.tomogram_shape_zyx),
        "pixel_size_angstrom": config.pixel_size_angstrom,
        "unit_box_px": config.unit_box_px,
        "n_particles": int(sum(s["n_particles"] for s in series)),
        "tiltseries": series,
        "versions": {"stasnake": stasnake.__version__ if hasattr(stasnake, "__version__") else "unknown",
                     "numpy": np.__version__, "numba": numba.__version__, "pandas": pd.__version__},
    }  # fmt: skip
    write_text_atomic(outdir / "truth" / "manifest.json", json.dumps(manifest, indent=2, default=float) + "\n")
    return manifest
