"""Benchmark the subtomogram alignment search against a plain scipy search and the FFT-only cap.

Run from the repository root::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_sta_align.py [--repeats 5] [--quick]

Rates are *particle-orientation evaluations per second*: one evaluation scores
one candidate orientation of one particle over the whole shift window
(ellipsoid of semi-axes ``--limits`` pixels) and keeps the best shift.

Synthetic particles: the chiral C6 unit (:func:`stasnake.synth.unit.unit_map`)
at random poses and shifts, +-60 degree wedge, SNR 0.1. For each box (32, 64)
and band (``low``, Fourier pixels; ``high`` = 2) the following are timed side
by side with :func:`benchmarks.common.measure_interleaved` (min and median of
clean runs; runs during which other processes used the CPU are discarded):

* ``ours``: :func:`stasnake.sta.align.align_particles` end to end on
  ``--particles`` particles (particle FFTs and spectra, all candidate
  orientations of a cone/in-plane scan, Newton subpixel peak), ``device="cpu"``,
  numba threads = all cores;
* ``ours, kernel``: :func:`stasnake.kernels.ccsearch.score_candidates` alone on
  prepared spectra (the per-orientation work);
* ``scipy``: the same search written plainly: per orientation
  ``scipy.ndimage.affine_transform`` (trilinear) rotates the masked reference,
  ``scipy.fft.rfftn``, multiply by wedge x band-pass x conj(particle FT) (the
  particle's spectrum is prepared once), ``irfftn``, maximum inside the
  shift ellipsoid (integer shifts), normalised by the two spectra's norms.
  scipy.fft uses all cores (``workers=-1``); ndimage is single-threaded;
* ``FFT only``: just the ``rfftn`` + ``irfftn`` pair of one box per
  orientation (``workers=-1``): the cap of any FFT-per-orientation method.

The scipy search and ours pick their best orientations from the same
candidate sets; the agreement (angle between the two choices) is printed.

A second table shows how one search's time grows with the number of particles
(fixed scan) and with the number of orientations (fixed particles).

Results go to ``benchmarks/results/bench_sta_align_<time>.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets OMP_WAIT_POLICY before numba is imported)
import numpy as np  # noqa: E402
import scipy.fft  # noqa: E402
from scipy import ndimage  # noqa: E402

from stasnake.kernels.ccsearch import score_candidates  # noqa: E402
from stasnake.sta import align  # noqa: E402
from stasnake.sta.angles import rotation_distance_deg  # noqa: E402
from stasnake.sta.wedge import fourier_pixel_grid, wedge_mask  # noqa: E402
from stasnake.synth.particles import random_rotations, simulate_particles  # noqa: E402
from stasnake.synth.unit import unit_map  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TILT = (-60.0, 60.0)


class ScipySearch:
    """The constrained-CC search written with scipy.ndimage + scipy.fft, one FFT pair per orientation."""

    def __init__(self, reference, low, high, limits_xyz):
        ref = np.asarray(reference, np.float32)
        self.n = n = ref.shape[0]
        self.ref = ref - ref.mean()
        kx, ky, kz = fourier_pixel_grid(n)
        r = np.sqrt(kx**2 + ky**2 + kz**2)
        band = align.bandpass(r, low, high) * (r < n / 2) * (r > 0)
        self.mw = (band * wedge_mask(n, TILT)).astype(np.float32)  # wedge x band-pass, box frame
        self.herm = np.where((kx == 0) | (kx == n // 2), 1.0, 2.0).astype(np.float32)
        s = (np.fft.fftfreq(n) * n).astype(np.float64)  # shift of each cc index, pixels
        lx, ly, lz = limits_xyz
        inside = (s[None, None, :] / lx) ** 2 + (s[None, :, None] / ly) ** 2 + (
            s[:, None, None] / lz
        ) ** 2 <= 1
        self.window = np.flatnonzero(inside.ravel())
        self.c = np.full(3, n // 2, np.float64)

    def particle(self, vol):
        spec = scipy.fft.rfftn(vol, workers=-1) * self.mw
        return spec, np.sqrt(np.sum(self.herm * np.abs(spec) ** 2))

    def score(self, rot, spec, p_norm):
        """Best normalised CC over the window for pose ``rot`` (active, reference -> particle)."""
        m = rot.T[::-1, ::-1]  # out(x) = ref(R^T (x - c) + c), in (z, y, x) index order
        rotated = ndimage.affine_transform(self.ref, m, offset=self.c - m @ self.c, order=1)
        t = scipy.fft.rfftn(rotated, workers=-1) * self.mw
        cc = scipy.fft.irfftn(np.conj(t) * spec, s=(self.n,) * 3, workers=-1).ravel()[self.window]
        t_norm = np.sqrt(np.sum(self.herm * np.abs(t) ** 2))
        return float(cc.max()) * self.n**3 / (t_norm * p_norm)


def _setup(box, n_particles, seed=0):
    """Unit map, particles at random poses (+-2 px shifts), and the start poses (the truth)."""
    rng = np.random.default_rng(seed)
    unit = unit_map(box, 5.4 * 32 / box)
    rots = random_rotations(n_particles, rng)
    shifts = rng.uniform(-2, 2, (n_particles, 3))
    parts = simulate_particles(unit, rots, shifts, rng, TILT, snr=0.1)
    return unit, parts, rots, shifts


def _params(box, low, limits, cone=(30, 10), inplane=(30, 10)):
    return align.SearchParams(*cone, *inplane, low=low, shift_limits_xyz=limits)


def bench_box(box, low, args):
    """Rates of ours, our kernel, the scipy search and the FFT pair at one box and band."""
    limits = tuple(args.limits)
    unit, parts, start, shifts = _setup(box, args.particles)
    params = _params(box, low, limits)
    prep = align.prepare_reference(unit, params)
    m = len(parts)
    tilts = np.tile(TILT, (m, 1))
    n_cand = len(params.scan().relative())
    n_eval = m * n_cand

    def ours():
        return align.align_particles(parts, start, shifts, tilts, prep, params)

    spectra, weights = align._particle_spectra(parts, range(m), prep, tilts)
    pa = align._particle_arrays(spectra, weights, prep, np.zeros((m, 3)))
    window, _ = align._window(box, box, prep.arrays.k_max, np.asarray(limits, float))
    cand = (start[:, None] @ params.scan().relative()[None]).reshape(-1, 3, 3)
    part_of = np.repeat(np.arange(m), n_cand)

    def kernel():
        return score_candidates(prep.arrays, window, pa, cand, part_of)

    sp = ScipySearch(unit, low, 2.0, limits)
    n_sp = min(args.scipy_orientations, n_eval)
    sp_parts = [sp.particle(parts[i]) for i in range(m)]

    def scipy_search():
        for j in range(n_sp):
            sp.score(cand[j], *sp_parts[part_of[j]])

    vol = parts[0]
    n_fft = args.fft_pairs

    def fft_only():
        for _ in range(n_fft):
            scipy.fft.irfftn(scipy.fft.rfftn(vol, workers=-1), s=vol.shape, workers=-1)

    timings = common.measure_interleaved(
        {"ours": ours, "ours, kernel": kernel, "scipy": scipy_search, "FFT only": fft_only},
        repeats=args.repeats,
        warmup=1,
    )
    counts = {"ours": n_eval, "ours, kernel": n_eval, "scipy": n_sp, "FFT only": n_fft}
    rows = []
    for name, r in timings.items():
        rows.append(
            {
                "box": box,
                "low": low,
                "K (band px)": prep.arrays.k_max,
                "list px": len(prep.k_xyz),
                "method": name,
                "evaluations": counts[name],
                "min s": r["min"],
                "median s": r["median"],
                "eval/s (min)": counts[name] / r["min"],
                "eval/s (median)": counts[name] / r["median"],
                "discarded": f"{r['discarded']:.0%}",
            }
        )
    rate = {row["method"]: row["eval/s (min)"] for row in rows}
    ratios = {
        "box": box,
        "low": low,
        "ours / scipy": rate["ours"] / rate["scipy"],
        "ours / FFT only": rate["ours"] / rate["FFT only"],
        "kernel / FFT only": rate["ours, kernel"] / rate["FFT only"],
        "kernel share": rate["ours"] / rate["ours, kernel"],
    }
    # agreement: best orientation of the first particles, scipy vs ours (same candidates)
    n_check = min(args.check_particles, m)
    ours_cc, _ = score_candidates(
        prep.arrays, window, pa, cand[: n_check * n_cand], part_of[: n_check * n_cand]
    )
    agree = []
    for i in range(n_check):
        sl = slice(i * n_cand, (i + 1) * n_cand)
        sp_cc = np.array([sp.score(cand[j], *sp_parts[i]) for j in range(sl.start, sl.stop)])
        a, b = cand[sl][np.argmax(ours_cc[sl])], cand[sl][np.argmax(sp_cc)]
        agree.append(float(rotation_distance_deg(a, b)))
    ratios["best-orientation disagreement, deg (max over particles)"] = max(agree)
    return rows, ratios


def bench_scaling(args):
    """Time of one search versus particles (fixed scan) and versus orientations (fixed particles)."""
    box, low, limits = 32, 12.0, tuple(args.limits)
    unit, parts, start, shifts = _setup(box, max(args.scaling_particles), seed=1)
    rows = []
    params = _params(box, low, limits)
    prep = align.prepare_reference(unit, params)
    for m in args.scaling_particles:
        tilts = np.tile(TILT, (m, 1))
        r = common.measure(
            lambda m=m, tilts=tilts: align.align_particles(
                parts[:m], start[:m], shifts[:m], tilts, prep, params
            ),
            repeats=args.repeats,
        )
        n_eval = m * len(params.scan().relative())
        rows.append(
            {
                "vary": "particles",
                "particles": m,
                "orientations/particle": n_eval // m,
                "min s": r["min"],
                "median s": r["median"],
                "eval/s (min)": n_eval / r["min"],
                "discarded": f"{r['discarded']:.0%}",
            }
        )
    m = args.scaling_particles[1]
    tilts = np.tile(TILT, (m, 1))
    for cone, inplane in (
        ((20, 10), (20, 10)),
        ((40, 10), (40, 10)),
        ((60, 7.5), (60, 7.5)),
        ((90, 6), (90, 6)),
    ):
        p = _params(box, low, limits, cone, inplane)
        n_or = len(p.scan().relative())
        r = common.measure(
            lambda p=p: align.align_particles(parts[:m], start[:m], shifts[:m], tilts, prep, p),
            repeats=args.repeats,
        )
        rows.append(
            {
                "vary": "orientations",
                "particles": m,
                "orientations/particle": n_or,
                "min s": r["min"],
                "median s": r["median"],
                "eval/s (min)": m * n_or / r["min"],
                "discarded": f"{r['discarded']:.0%}",
            }
        )
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--particles", type=int, default=16)
    ap.add_argument("--limits", type=float, nargs=3, default=(4.0, 4.0, 4.0))
    ap.add_argument(
        "--scipy-orientations", type=int, default=40, help="orientations the scipy search times"
    )
    ap.add_argument("--fft-pairs", type=int, default=50, help="rfftn+irfftn pairs per FFT-only run")
    ap.add_argument("--check-particles", type=int, default=3)
    ap.add_argument("--cases", default="32:12,64:16,64:24,64:31", help="box:low pairs")
    ap.add_argument("--scaling-particles", type=int, nargs="+", default=[4, 8, 16, 32])
    ap.add_argument("--quick", action="store_true", help="2 repeats, fewer cases (a smoke run)")
    args = ap.parse_args()
    if args.quick:
        args.repeats = 2
        args.cases = "32:12,64:16"
        args.scipy_orientations = 10
        args.fft_pairs = 20
        args.scaling_particles = [4, 8, 16]
    info = common.machine_info()
    print("# Alignment search benchmark\n")
    print(json.dumps(info))
    rows, ratios = [], []
    for case in args.cases.split(","):
        box, low = case.split(":")
        r, q = bench_box(int(box), float(low), args)
        rows += r
        ratios.append(q)
    print(
        "\n## Particle-orientation evaluations per second (shift window: ellipsoid "
        f"{tuple(args.limits)} px, cone 30/10 x in-plane 30/10 = "
        f"{len(_params(32, 12, None).scan().relative())} orientations per particle)\n"
    )
    common.print_table(rows)
    print("\n## Ratios (from min times)\n")
    common.print_table(ratios)
    scaling = bench_scaling(args)
    print("\n## One search's time versus particles and orientations (box 32, low 12)\n")
    common.print_table(scaling)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = {"machine": info, "args": vars(args), "rates": rows, "ratios": ratios, "scaling": scaling}
    (RESULTS / f"bench_sta_align_{stamp}.json").write_text(json.dumps(out, indent=2, default=str))
    md = "\n\n".join(common.markdown_table(t) for t in (rows, ratios, scaling))
    (RESULTS / f"bench_sta_align_{stamp}.md").write_text(md + "\n")
    print(f"\nwritten {RESULTS}/bench_sta_align_{stamp}.{{json,md}}")


if __name__ == "__main__":
    main()
