"""Benchmark per-tilt CTF estimation against a brute-force numpy/scipy baseline.

Run from the repository root::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_ctf.py [--repeats 5]

Test images: white noise filtered by a known astigmatic CTF (U/V = 30150/29850 Å,
angle 40 degrees) and a B-factor envelope, plus white noise of equal variance,
at demo size (384 x 384 px, 5.4 Å/px, band 50-13.5 Å) and at 2048 x 2048 px
(2.7 Å/px, band 50-6.75 Å, the workflow's default band of 50 Å to 2.5 pixels).
Compared, side by side (:func:`common.measure_interleaved`):

* ``stasnake single``: :func:`stasnake.tilt.ctf_estimate.estimate_defocus` on
  one image (grid search of the 1-D likelihood, five-start Nelder-Mead
  over defocus and astigmatism, score and fit resolution);
* ``stasnake series``: :func:`estimate_tilt_series_ctf` on a stack of
  ``--series`` images (joint fit: pooled defocus, series astigmatism, per-tilt
  refinement), time divided by the number of images;
* ``brute force``: the straightforward baseline: the same Welch periodogram
  (tiles of the same size, Hann window, ``scipy.fft``), rotational average,
  degree-4 polynomial background, 1-D grid search of the normalised
  cross-correlation with CTF^2 over the whole defocus range (numpy,
  vectorised over the grid), then a brute-force 3-D grid of the 2-D
  cross-correlation over mean defocus (+-3 % in 0.05 rad steps), astigmatism
  (half U-V difference 0-400 Å in 50 Å steps) and its angle (10 degree steps).

Times are seconds per tilt image; the ratio column is brute force / stasnake.
Each row also gives the defocus error of the mean defocus (``err``) to show
both are working estimators.
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

from stasnake.tilt.ctf import ctf_2d, electron_wavelength_angstrom  # noqa: E402
from stasnake.tilt.ctf_estimate import (  # noqa: E402
    default_tile_size,
    estimate_defocus,
    estimate_tilt_series_ctf,
    power_spectrum,
    tile_centres,
)

RESULTS = Path(__file__).resolve().parent / "results"
DU, DV, ANGLE = 30150.0, 29850.0, 40.0


def ctf_noise_image(n: int, px: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kx = np.fft.rfftfreq(n, px)[None]
    ky = np.fft.fftfreq(n, px)[:, None]
    c = ctf_2d((n, n), px, DU, DV, ANGLE) * np.exp(-25.0 * (kx**2 + ky**2))
    img = scipy.fft.irfft2(scipy.fft.rfft2(rng.normal(size=(n, n)), workers=-1) * c, s=(n, n), workers=-1)
    return (img + img.std() * rng.normal(size=(n, n))).astype(np.float32)


def brute_force(image: np.ndarray, px: float, res=(50.0, 13.5), drange=(5000.0, 60000.0)) -> tuple[float, float, float]:
    """Baseline estimator: (defocus U, V, angle) by grid searches of the normalised cross-correlation."""
    lam, cs, amp = electron_wavelength_angstrom(300.0), 2.7e7, 0.1
    tile = default_tile_size(image.shape, px, drange[1], res[1])
    spec = np.sqrt(power_spectrum(image, tile, tile_centres(image.shape, tile)))
    fx = np.fft.rfftfreq(tile, px)[None]
    fy = np.fft.fftfreq(tile, px)[:, None]
    k = np.sqrt(fx**2 + fy**2)
    theta = np.arctan2(np.broadcast_to(fy, k.shape), np.broadcast_to(fx, k.shape))
    band = (k >= 1 / res[0]) & (k <= 1 / res[1])
    ring = np.rint(k * tile * px).astype(int)
    nr = tile // 2 + 1
    ok = ring < nr
    prof = np.bincount(ring[ok], spec[ok], nr) / np.maximum(np.bincount(ring[ok], None, nr), 1)
    k1 = np.arange(nr) / (tile * px)
    b1 = (k1 >= 1 / res[0]) & (k1 <= 1 / res[1])
    x1 = np.linspace(-1, 1, b1.sum())
    bg_coef = np.polynomial.polynomial.polyfit(x1, prof[b1], 4)
    y = prof[b1] - np.polynomial.polynomial.polyval(x1, bg_coef)
    y = (y - y.mean()) / y.std()

    def ctf2(df, kk):
        kk2 = kk * kk
        chi = np.pi * lam * df * kk2 - 0.5 * np.pi * cs * lam**3 * kk2 * kk2
        return (np.sqrt(1 - amp * amp) * np.sin(chi) + amp * np.cos(chi)) ** 2

    step = 0.05 / (np.pi * lam * (1 / res[1]) ** 2)
    grid = np.arange(drange[0], drange[1] + step, step)
    m = ctf2(grid[:, None], k1[b1][None, :])
    m = (m - m.mean(1, keepdims=True)) / m.std(1, keepdims=True)
    d0 = grid[np.argmax(m @ y)]
    # 2-D brute force around d0
    kb, tb = k[band], theta[band]
    xb = 2 * (kb - kb.min()) / (kb.max() - kb.min()) - 1
    sb = spec[band] - np.polynomial.polynomial.polyval(xb, bg_coef)
    sb = (sb - sb.mean()) / sb.std()
    best = (-np.inf, d0, 0.0, 0.0)
    for dfm in np.arange(0.97 * d0, 1.03 * d0, step):
        for half in np.arange(0.0, 401.0, 50.0):
            for ang in np.radians(np.arange(0.0, 180.0, 10.0) if half > 0 else [0.0]):
                c = ctf2(dfm + half * np.cos(2 * (tb - ang)), kb)
                cc = float(np.dot(sb, c - c.mean()) / c.std())
                if cc > best[0]:
                    best = (cc, dfm, half, ang)
    _, dfm, half, ang = best
    return dfm + half, dfm - half, float(np.degrees(ang)) % 180.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--series", type=int, default=5, help="images in the stasnake series run")
    args = ap.parse_args()
    rows, raw = [], {}
    for n, px in ((384, 5.4), (2048, 2.7)):
        res = (50.0, 2.5 * px)
        stack = np.stack([ctf_noise_image(n, px, seed) for seed in range(args.series)])
        out = {}

        def ours_single(stack=stack, px=px, res=res, out=out):
            out["single"] = estimate_defocus(stack[0], px, resolution_range_angstrom=res)

        def ours_series(stack=stack, px=px, res=res, out=out):
            out["series"] = estimate_tilt_series_ctf(stack, px, np.zeros(len(stack)), resolution_range_angstrom=res)

        def baseline(stack=stack, px=px, res=res, out=out):
            out["brute"] = brute_force(stack[0], px, res)

        t0 = time.perf_counter()
        stats = common.measure_interleaved({"stasnake single": ours_single, "stasnake series": ours_series,
                                            "brute force": baseline}, repeats=args.repeats, warmup=1)  # fmt: skip
        print(f"{n}: measured in {time.perf_counter() - t0:.0f} s", flush=True)
        per_tilt = {"stasnake single": 1, "stasnake series": len(stack), "brute force": 1}
        truth = 0.5 * (DU + DV)
        err = {
            "stasnake single": abs(0.5 * (out["single"]["defocus_u_angstrom"] + out["single"]["defocus_v_angstrom"]) - truth),
            "stasnake series": float(np.max(np.abs(0.5 * (out["series"].defocus_u_angstrom + out["series"].defocus_v_angstrom)
                                                   - truth))),
            "brute force": abs(0.5 * (out["brute"][0] + out["brute"][1]) - truth),
        }  # fmt: skip
        base = stats["brute force"]["median"] / per_tilt["brute force"]
        for name, st in stats.items():
            med = st["median"] / per_tilt[name]
            rows.append({"image": f"{n}² @ {px} Å", "implementation": name, "s/tilt min": st["min"] / per_tilt[name],
                         "s/tilt median": med, "brute force / this": base / med,
                         "err Å (max)": err[name], "discarded": f"{100 * st['discarded']:.0f}%"})  # fmt: skip
        raw[str(n)] = {"stats": stats, "errors_angstrom": err, "pixel_size_angstrom": px, "band_angstrom": res}
    info = common.machine_info()
    table = common.markdown_table(rows)
    print(json.dumps(info))
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"bench_ctf-{stamp}.json").write_text(json.dumps({"machine": info, "rows": rows, "raw": raw}, indent=1))
    (RESULTS / f"bench_ctf-{stamp}.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
