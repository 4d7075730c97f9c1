"""Benchmark fiducial tilt-series alignment (detection + tracking + fit) and the xcorr fallback.

Run from the repository root::

    python benchmarks/bench_alignment.py [--repeats 3] [--size-2k 2048] [--skip-2k]

Two tilt series, 41 tilts over +-60 degrees, psi = 85 degrees, beads of 100 Å
at 5.4 Å/px (18.5 px):

* ``demo``: the first tilt series of ``SynthConfig.demo()`` (384 x 384 px,
  3 VLPs, 8 beads), made by :func:`stasnake.synth.generate_dataset`.
* ``2k``: a 2048 x 2048 series drawn directly, cheaply: ``--beads-2k`` gold
  beads and ``--spheres-2k`` hollow spheres (membrane-like shells) at random
  3-D positions, each projected analytically (the projection of a ball is
  ``2 sqrt(r^2 - rho^2)`` at its projected centre, a shell is the difference
  of two balls), placed in the RAW images through the same geometry as the
  workflow (``x_raw = c + R(psi) (p_t(P) - D_t)``, random shifts ``D_t`` of
  4 px RMS), plus a smooth ice gradient and Gaussian noise. The full
  generator would need a 2048 x 2048 x 160 phantom and its 41 projections.

Timed, side by side with :func:`benchmarks.common.measure_interleaved`:

* ``fiducial (ours)``: :func:`stasnake.tilt.fiducials.track_beads_with_shifts`
  (detection in every tilt, cross-correlation, triangulation, two model fits,
  assignment) + :func:`stasnake.tilt.align_model.fit_projection_model`: the
  whole job of ``scripts/align_tiltseries.py``, without file I/O.
* ``fiducial, detection by match_template``: the same job with the tracker's
  bead detector replaced by the ``skimage match_template`` baseline below
  (pixel-precision peaks and their NCC scores).
* ``xcorr fallback``: :func:`stasnake.tilt.align_xcorr.align_by_cross_correlation`.
* bead detection alone, per tilt (on ``--detect-tilts`` tilts):
  ``ours`` (:func:`detect_beads_with_scores`: NCC on a copy binned to ~6 px per
  bead, then subpixel refinement of each peak at full size) against two
  straightforward baselines of the same job at full size:
  ``skimage match_template`` (``skimage.feature.match_template`` of the
  inverted image with the same disc template, ``pad_input=True``, then
  ``peak_local_max``) and ``fftconvolve NCC`` (the same high-pass + NCC as
  ours, ``scipy.signal.fftconvolve`` at full size, no binning, same peak
  rule, no refinement).

Accuracy is reported with the timings: detection recall (true beads found
within 1.5 px, beads overlapping another excluded), median error, false
detections; for the whole alignment the tilt-axis error and the RMS shift
error against the truth in the minimum-norm gauge.

Results go to ``benchmarks/results/bench_alignment_<time>.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets OMP_WAIT_POLICY before numba is imported)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import ndimage  # noqa: E402

from stasnake.io.imod import read_xf  # noqa: E402
from stasnake.io.mdoc import read_mdoc  # noqa: E402
from stasnake.io.mrc import read_mrc  # noqa: E402
from stasnake.synth import SynthConfig, generate_dataset  # noqa: E402
from stasnake.tilt import fiducials  # noqa: E402
from stasnake.tilt.align_model import fit_projection_model, minimum_norm_gauge  # noqa: E402
from stasnake.tilt.align_xcorr import align_by_cross_correlation  # noqa: E402
from stasnake.tilt.fiducials import (  # noqa: E402
    _prepare,
    bead_template,
    detect_beads_with_scores,
    normalised_cross_correlation,
    track_beads_with_shifts,
)

RESULTS = Path(__file__).resolve().parent / "results"
PSI_DEG = 85.0


def _rot(psi_deg):
    p = np.radians(psi_deg)
    return np.array([[np.cos(p), -np.sin(p)], [np.sin(p), np.cos(p)]])


def _raw_positions(points_xyz, shifts, angles_deg, psi_deg, shape_yx):
    """(n_points, n_tilts, 2) raw (x, y) of 3-D points (px about the volume centre)."""
    ny, nx = shape_yx
    c = np.array([nx // 2, ny // 2], dtype=float)
    t = np.radians(angles_deg)
    u = points_xyz[:, 0:1] * np.cos(t) + points_xyz[:, 2:3] * np.sin(t)
    q = np.stack([u, np.broadcast_to(points_xyz[:, 1:2], u.shape)], axis=-1) - shifts[None]
    return c + q @ _rot(psi_deg).T


# ----------------------------------------------------------------------------------------------
# test series


def demo_series(workdir: Path) -> dict:
    """First tilt series of SynthConfig.demo(), sorted by tilt, with its true bead positions and .xf."""
    config = dataclasses.replace(SynthConfig.demo(), n_tiltseries=1)
    generate_dataset(workdir, config)
    stack, apix = read_mrc(workdir / "tiltseries" / "TS_01.mrc")
    _, sections = read_mdoc(workdir / "tiltseries" / "TS_01.mrc.mdoc")
    angles = sections["TiltAngle"].to_numpy(dtype=float)
    order = np.argsort(angles, kind="stable")
    stack, angles = np.ascontiguousarray(np.asarray(stack)[order]), angles[order]
    xf = read_xf(workdir / "truth" / "TS_01" / "alignment.xf")
    fid = pd.read_csv(workdir / "truth" / "TS_01" / "fiducials.csv")
    nz, ny, nx = config.tomogram_shape_zyx
    beads = fid[["x", "y", "z"]].to_numpy() - 1.0 - np.array([nx // 2, ny // 2, nz // 2])
    truth = np.stack([_raw_positions(beads, xf[i : i + 1, 4:], angles[i : i + 1], config.tilt_axis_angle_deg,
                                     (ny, nx))[:, 0] for i in range(angles.size)], axis=1)  # fmt: skip
    return {"name": f"demo {nx}x{ny}", "stack": stack, "angles": angles, "shifts": xf[:, 4:], "truth": truth,
            "d_px": config.bead_diameter_angstrom / apix, "psi": config.tilt_axis_angle_deg}  # fmt: skip


def _draw_ball(image, centre_xy, radius_px, weight):
    """Subtract ``weight * 2 sqrt(r^2 - rho^2)`` (projected ball thickness) around ``centre_xy``, in place."""
    ny, nx = image.shape
    h = int(np.ceil(radius_px)) + 2
    cx, cy = int(round(centre_xy[0])), int(round(centre_xy[1]))
    x0, x1, y0, y1 = max(cx - h, 0), min(cx + h + 1, nx), max(cy - h, 0), min(cy + h + 1, ny)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    rho2 = (xx - centre_xy[0]) ** 2 + (yy - centre_xy[1]) ** 2
    image[y0:y1, x0:x1] -= weight * 2.0 * np.sqrt(np.maximum(radius_px**2 - rho2, 0.0))


def synthetic_2k_series(size_px=2048, n_beads=60, n_spheres=12, bead_diameter_px=100.0 / 5.4, thickness_px=300,
                        noise_sigma=6.0, shell_weight=0.15, seed=0) -> dict:  # fmt: skip
    """Analytic 2k tilt series (module docstring): beads + hollow spheres + ice gradient + noise, float32."""
    rng = np.random.default_rng(seed)
    angles = np.arange(-60.0, 60.0 + 1e-9, 3.0)
    n = angles.size
    r_bead = 0.5 * bead_diameter_px
    half = 0.45 * size_px
    beads: list[np.ndarray] = []
    while len(beads) < n_beads:
        p = np.array([rng.uniform(-half, half), rng.uniform(-half, half), rng.uniform(-0.5, 0.5) * thickness_px])
        if all(np.linalg.norm(p - b) > 2 * r_bead + 1 for b in beads):
            beads.append(p)
    beads = np.array(beads)
    spheres = np.column_stack([rng.uniform(-half, half, n_spheres), rng.uniform(-half, half, n_spheres),
                               rng.uniform(-0.25, 0.25, n_spheres) * thickness_px])  # fmt: skip
    radii = rng.uniform(40.0, 60.0, n_spheres)
    shifts = rng.normal(0.0, 4.0, (n, 2))
    shape = (size_px, size_px)
    bead_xy = _raw_positions(beads, shifts, angles, PSI_DEG, shape)
    sphere_xy = _raw_positions(spheres, shifts, angles, PSI_DEG, shape)
    yy, xx = np.mgrid[0:size_px, 0:size_px].astype(np.float32) / size_px
    stack = np.empty((n,) + shape, dtype=np.float32)
    for i in range(n):
        img = np.full(shape, 100.0, dtype=np.float64)
        img -= 10.0 * (xx - 0.5) + 6.0 * (yy - 0.5) ** 2  # smooth ice gradient
        for (x, y), r in zip(sphere_xy[:, i], radii, strict=True):
            _draw_ball(img, (x, y), r, shell_weight)  # shell = outer ball - inner ball
            _draw_ball(img, (x, y), r - 4.0, -shell_weight)
        for x, y in bead_xy[:, i]:
            _draw_ball(img, (x, y), r_bead, 1.0)
        img += rng.normal(0.0, noise_sigma, shape)
        stack[i] = img
    return {"name": f"analytic {size_px}x{size_px}", "stack": stack, "angles": angles, "shifts": shifts,
            "truth": bead_xy, "d_px": bead_diameter_px, "psi": PSI_DEG}  # fmt: skip


# ----------------------------------------------------------------------------------------------
# baselines for bead detection (full size, no binning)


def detect_match_template(image, d_px, threshold=0.3, with_scores=False):
    """skimage.feature.match_template of the inverted image with our disc template + peak_local_max (pixel precision)."""
    from skimage.feature import match_template, peak_local_max

    tmpl = bead_template(d_px).astype(np.float32)
    ncc = match_template(-np.asarray(image, dtype=np.float32), tmpl, pad_input=True)
    peaks = peak_local_max(ncc, min_distance=max(1, int(0.4 * d_px)), threshold_abs=threshold,
                           exclude_border=int(0.5 * d_px))  # fmt: skip
    pos = peaks[:, ::-1].astype(np.float64)
    return (pos, ncc[peaks[:, 0], peaks[:, 1]].astype(np.float64)) if with_scores else pos


def detect_fftconvolve(image, d_px, threshold=0.3):
    """Our high-pass + NCC (scipy.signal.fftconvolve) at full size, same local-maximum rule, no refinement."""
    ncc = normalised_cross_correlation(_prepare(np.asarray(image, dtype=np.float32), d_px), bead_template(d_px))
    size = max(3, int(round(0.8 * d_px)) | 1)
    peaks = (ncc == ndimage.maximum_filter(ncc, size=size, mode="constant", cval=-np.inf)) & (ncc > threshold)
    iy, ix = np.nonzero(peaks)
    border = 0.5 * d_px
    ny, nx = ncc.shape
    ok = (ix >= border) & (ix <= nx - 1 - border) & (iy >= border) & (iy <= ny - 1 - border)
    return np.column_stack([ix[ok], iy[ok]]).astype(np.float64)


def detection_accuracy(found_per_tilt, truth, tilts, d_px) -> dict:
    """Recall of isolated true beads (within 1.5 px), their median error, and false detections per tilt."""
    found_n, isolated_n, errors, false = 0, 0, [], 0
    for k, i in enumerate(tilts):
        true = truth[:, i]
        ny_ok = np.all(np.isfinite(true), axis=1)
        true = true[ny_ok]
        found = found_per_tilt[k]
        sep = np.linalg.norm(true[:, None] - true[None], axis=-1) + np.eye(len(true)) * 1e9
        isolated = sep.min(axis=1) > 1.5 * d_px
        if len(found):
            dist = np.min(np.linalg.norm(true[:, None] - found[None], axis=-1), axis=1)
            near = np.min(np.linalg.norm(found[:, None] - true[None], axis=-1), axis=1)
            false += int(np.sum(near > 0.5 * d_px))
        else:
            dist = np.full(len(true), np.inf)
        hit = isolated & (dist < 1.5)
        isolated_n += int(isolated.sum())
        found_n += int(hit.sum())
        errors += list(dist[hit])
    return {"recall": found_n / max(isolated_n, 1), "median_error_px": float(np.median(errors)) if errors else np.nan,
            "false_per_tilt": false / len(tilts)}  # fmt: skip


# ----------------------------------------------------------------------------------------------


def full_alignment(series):
    s = series
    tracks, shifts = track_beads_with_shifts(s["stack"], s["angles"], s["d_px"], s["psi"])
    return fit_projection_model(tracks, s["angles"], s["stack"].shape[1:], s["psi"], fallback_shifts_px=shifts), tracks


def full_alignment_match_template(series):
    """The same job with bead detection by skimage match_template (baseline): the tracker's detector swapped."""
    original = fiducials.detect_beads_with_scores
    fiducials.detect_beads_with_scores = lambda image, d, n_max=None: detect_match_template(image, d, with_scores=True)
    try:
        return full_alignment(series)
    finally:
        fiducials.detect_beads_with_scores = original


def shift_error_px(shifts, true_shifts, angles) -> float:
    a, _ = minimum_norm_gauge(shifts, angles)
    b, _ = minimum_norm_gauge(true_shifts, angles)
    return float(np.sqrt(np.mean(np.sum((a - b) ** 2, axis=1))))


def bench_series(series, repeats: int, detect_tilts: int) -> tuple[list[dict], list[dict], dict]:
    s = series
    n, ny, nx = s["stack"].shape
    t0 = time.perf_counter()
    result, tracks = full_alignment(s)
    first_s = time.perf_counter() - t0
    xc = align_by_cross_correlation(s["stack"], s["angles"], s["psi"])
    accuracy = {
        "series": s["name"], "beads_tracked": len(tracks), "beads_true": int(s["truth"].shape[0]),
        "fiducial_axis_error_deg": result["tilt_axis_angle_deg"] - s["psi"],
        "fiducial_shift_rms_error_px": shift_error_px(result["shifts"], s["shifts"], s["angles"]),
        "fiducial_residual_px": result["residual_rms_px"],
        "xcorr_shift_rms_error_px": shift_error_px(xc["shifts"], s["shifts"], s["angles"]),
        "first_run_s": first_s,
    }  # fmt: skip
    base, _ = full_alignment_match_template(s)
    accuracy["baseline_shift_rms_error_px"] = shift_error_px(base["shifts"], s["shifts"], s["angles"])
    full = common.measure_interleaved({
        "fiducial (ours)": lambda: full_alignment(s),
        "fiducial, detection by match_template": lambda: full_alignment_match_template(s),
        "xcorr fallback": lambda: align_by_cross_correlation(s["stack"], s["angles"], s["psi"]),
    }, repeats=repeats, warmup=0)  # fmt: skip
    rows = []
    ours = full["fiducial (ours)"]
    for name, m in full.items():
        rows.append({"series": s["name"], "job": name, "tilts": n, "min s": m["min"], "median s": m["median"],
                     "s per tilt (min)": m["min"] / n, "x ours (min)": m["min"] / ours["min"],
                     "x ours (median)": m["median"] / ours["median"], "runs": m["n_runs"],
                     "discarded": f"{m['discarded']:.0%}"})  # fmt: skip
    # detection alone on a subset of tilts spread over the series
    tilts = np.unique(np.linspace(0, n - 1, detect_tilts).round().astype(int))
    d = s["d_px"]
    detectors = {
        "ours (binned NCC + refine)": lambda i: detect_beads_with_scores(s["stack"][i], d)[0],
        "skimage match_template": lambda i: detect_match_template(s["stack"][i], d),
        "fftconvolve NCC full size": lambda i: detect_fftconvolve(s["stack"][i], d),
    }
    det = common.measure_interleaved({k: (lambda f=f: [f(i) for i in tilts]) for k, f in detectors.items()},
                                     repeats=repeats, warmup=1)  # fmt: skip
    det_rows = []
    for name, f in detectors.items():
        acc = detection_accuracy([f(i) for i in tilts], s["truth"], tilts, d)
        m = det[name]
        det_rows.append({"series": s["name"], "detector": name, "ms per tilt (min)": 1e3 * m["min"] / len(tilts),
                         "ms per tilt (median)": 1e3 * m["median"] / len(tilts),
                         "x ours (min)": m["min"] / det["ours (binned NCC + refine)"]["min"],
                         "recall": acc["recall"], "median err px": acc["median_error_px"],
                         "false / tilt": acc["false_per_tilt"], "discarded": f"{m['discarded']:.0%}"})  # fmt: skip
    return rows, det_rows, accuracy


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--detect-tilts", type=int, default=5, help="tilts used for the per-tilt detection comparison")
    p.add_argument("--size-2k", type=int, default=2048)
    p.add_argument("--beads-2k", type=int, default=60)
    p.add_argument("--spheres-2k", type=int, default=12)
    p.add_argument("--skip-2k", action="store_true")
    args = p.parse_args(argv)
    info = common.machine_info()
    print("machine:", json.dumps(info))
    all_rows, all_det, all_acc = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        series = [demo_series(Path(tmp))]
        print(f"demo series generated in {time.perf_counter() - t0:.1f} s")
    if not args.skip_2k:
        t0 = time.perf_counter()
        series.append(synthetic_2k_series(args.size_2k, args.beads_2k, args.spheres_2k))
        print(f"2k series drawn in {time.perf_counter() - t0:.1f} s")
    for s in series:
        rows, det_rows, acc = bench_series(s, args.repeats, args.detect_tilts)
        all_rows += rows
        all_det += det_rows
        all_acc.append(acc)
        print(f"\n{s['name']}: done", flush=True)
    tables = [
        "Whole alignment per tilt series (side by side, min/median over clean runs):\n",
        common.markdown_table(all_rows, ["series", "job", "tilts", "min s", "median s", "s per tilt (min)", "x ours (min)",
                                         "x ours (median)", "runs", "discarded"]),
        "\nBead detection per tilt (side by side):\n",
        common.markdown_table(all_det, ["series", "detector", "ms per tilt (min)", "ms per tilt (median)", "x ours (min)",
                                        "recall", "median err px", "false / tilt", "discarded"]),
        "\nAccuracy against the truth:\n",
        common.markdown_table(all_acc, ["series", "beads_tracked", "beads_true", "fiducial_axis_error_deg",
                                        "fiducial_shift_rms_error_px", "fiducial_residual_px",
                                        "baseline_shift_rms_error_px", "xcorr_shift_rms_error_px", "first_run_s"]),
    ]  # fmt: skip
    text = "\n".join(tables)
    print("\n" + text)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"bench_alignment_{stamp}.md").write_text(f"machine: {json.dumps(info)}\n\n{text}\n")
    (RESULTS / f"bench_alignment_{stamp}.json").write_text(json.dumps(
        {"machine": info, "args": vars(args), "alignment": all_rows, "detection": all_det, "accuracy": all_acc},
        indent=2, default=float))  # fmt: skip
    print(f"\nraw results: benchmarks/results/bench_alignment_{stamp}.{{md,json}}")


if __name__ == "__main__":
    main()
