"""Benchmark wedge-compensated subtomogram averaging against a straightforward scipy baseline.

Run from the repository root::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_averaging.py [--boxes 32 64 --particles 400 100 --repeats 5]

Random particles (box 32 and 64, random poses and shifts, +-60 degree wedge) are
averaged with Fourier-weight (missing-wedge) compensation by

* ``stasnake``: :func:`stasnake.sta.average.accumulate_particles` +
  :func:`finish_average`, end to end (numba trilinear rotation, scipy.fft rfftn
  with all cores, numba accumulation kernel with the rotated wedge evaluated on
  the fly; numba threads = all cores);
* ``stasnake, CTF-weighted``: the same with each particle's CTF and exposure
  transfer (``transfers=``, demo-like tables from
  :func:`stasnake.sta.transfer.transfer_table`, computed beforehand; the
  ``transfer tables`` stage times computing them);
* ``stasnake, cubic interpolation``: the same with cubic B-spline rotation
  (``interpolation_order=3``, the numba cubic B-spline kernel on the host: the
  final maps' default, ``averaging.final_interpolation``);
* its stages alone, per particle: ``rotate`` (:func:`rotate_volume`; ``rotate, cubic`` with
  ``order=3`` beside ``scipy.ndimage.map_coordinates(order=3)``, the same result),
  ``rfftn`` (scipy.fft, all cores) and ``accumulate``
  (:func:`stasnake.kernels.accumulate.accumulate_spectrum` on prepared spectra);
* ``scipy baseline``: per particle ``scipy.ndimage.affine_transform(order=1)``
  (the same pose and shift), ``scipy.fft.rfftn`` (all cores), the rotated wedge
  mask from :func:`stasnake.sta.wedge.wedge_mask` (numpy), ``sum += mask * F``,
  ``weight += mask``; then the same division.

Rates are particles per second (particles / time). Timings use
:mod:`benchmarks.common` (interleaved runs, min and median, runs discarded when
other processes used the CPU). The two averages are compared (correlation, max
difference relative to the max).

``--memory`` (on unless ``--no-memory``) measures the peak memory of a job that
averages ``--mem-particles`` box-``--mem-box`` particles read from a memmapped
MRC stack, in a subprocess (``ru_maxrss`` of RUSAGE_CHILDREN, plus RssAnon /
RssFile sampled from /proc/self/status: memmapped file pages that were read
count in RssFile, not in the job's private memory RssAnon).
``--device cuda`` instead compares the CPU and CUDA paths (needs a GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets OMP_WAIT_POLICY before numba is imported)
import numba  # noqa: E402
import numpy as np  # noqa: E402
import scipy.fft  # noqa: E402
import scipy.ndimage  # noqa: E402

from stasnake.kernels.accumulate import accumulate_spectrum, wedge_parameters  # noqa: E402
from stasnake.sta.average import AverageSums, accumulate_particles, finish_average  # noqa: E402
from stasnake.sta.rotate import box_centre_xyz, rotate_volume  # noqa: E402
from stasnake.sta.transfer import transfer_from_tilts, transfer_table  # noqa: E402
from stasnake.sta.wedge import wedge_mask  # noqa: E402
from stasnake.synth.particles import random_rotations  # noqa: E402

TILT = (-60.0, 60.0)


def demo_transfers(n, m, rng):
    """Per-particle CTF transfer tables as the demo's (41 tilts, 3 µm, 5.4 Å, dose-symmetric, flipped, weighted)."""
    angles = np.arange(-60.0, 61.0, 3.0)
    model = transfer_from_tilts(angles, np.full(angles.size, 30000.0), 3.0 * np.argsort(np.argsort(np.abs(angles))), 3.0,
                                phase_flipped=True, dose_weighting_reduction=0.2, voltage_kv=300.0, cs_mm=2.7,
                                amplitude_contrast=0.1, pixel_size_angstrom=5.4, tomogram_shape_zyx=(160, 384, 384))  # fmt: skip
    positions = rng.uniform((1, 1, 1), (384, 384, 160), (m, 3))
    return [transfer_table(model, positions[i], n, 5.4) for i in range(m)], model, positions


# ----------------------------------------------------------------------------- baseline
def scipy_baseline(particles, matrices, shifts, tilt_range=TILT) -> AverageSums:
    """Straightforward per-particle averaging with scipy and numpy: the same sums as accumulate_particles."""
    n = particles.shape[-1]
    c = box_centre_xyz((n, n, n))
    spectrum = np.zeros((n, n, n // 2 + 1), np.complex128)
    weight = np.zeros(spectrum.shape)
    workers = os.cpu_count() or 1
    for vol, r, s in zip(particles, matrices, shifts, strict=True):
        # out(p) = vol(R (p - c) + c + s); affine_transform works on (z, y, x) indices
        m_zyx = r[::-1, ::-1]
        offset = (c + s)[::-1] - m_zyx @ c[::-1]
        aligned = scipy.ndimage.affine_transform(vol, m_zyx, offset, order=1, mode="grid-constant", cval=0.0)
        mask = wedge_mask(n, tilt_range, r)
        spectrum += mask * scipy.fft.rfftn(aligned, workers=workers)
        weight += mask
    return AverageSums(spectrum, weight, len(particles), n)


def ours(particles, matrices, shifts):
    return accumulate_particles(particles, matrices, shifts, TILT, log_every=0)


def corr(a, b):
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def bench_box(n, m, repeats):
    rng = np.random.default_rng(n)
    parts = rng.standard_normal((m, n, n, n), dtype=np.float32)
    mats = random_rotations(m, rng)
    shifts = rng.uniform(-2, 2, (m, 3))
    # agreement of the two averages
    a_ours, _ = finish_average(ours(parts, mats, shifts))
    a_base, _ = finish_average(scipy_baseline(parts, mats, shifts))
    agree = {
        "corr": corr(a_ours, a_base),
        "max |diff| / max": float(np.abs(a_ours - a_base).max() / np.abs(a_base).max()),
    }
    # stages alone
    aligned = [rotate_volume(parts[i], mats[i], shifts[i]) for i in range(m)]
    spectra = [scipy.fft.rfftn(a, workers=os.cpu_count() or 1) for a in aligned]
    wp = wedge_parameters(np.tile(TILT, (m, 1)))
    acc_s = np.zeros((n, n, n // 2 + 1), np.complex128)
    acc_w = np.zeros(acc_s.shape)
    tables, model, positions = demo_transfers(n, m, rng)

    def rotate_only():
        for i in range(m):
            rotate_volume(parts[i], mats[i], shifts[i])

    def rotate_cubic_only():
        for i in range(m):
            rotate_volume(parts[i], mats[i], shifts[i], order=3)

    def rotate_cubic_scipy():
        c = np.full(3, n // 2, dtype=float)
        z, y, x = np.meshgrid(*(np.arange(n) - n // 2,) * 3, indexing="ij")
        grid = np.stack([x.ravel(), y.ravel(), z.ravel()])
        for i in range(m):
            src = mats[i] @ grid + (c + shifts[i])[:, None]
            scipy.ndimage.map_coordinates(parts[i], src[::-1], order=3, mode="grid-constant", prefilter=True)

    def fft_only():
        for a in aligned:
            scipy.fft.rfftn(a, workers=os.cpu_count() or 1)

    def accumulate_only():
        for i in range(m):
            accumulate_spectrum(spectra[i], mats[i], wp[i], 1.0, acc_s, acc_w)

    def accumulate_weighted_only():
        for i in range(m):
            accumulate_spectrum(spectra[i], mats[i], wp[i], 1.0, acc_s, acc_w, *tables[i])

    def tables_only():
        for i in range(m):
            transfer_table(model, positions[i], n, 5.4)

    fns = {
        "stasnake": lambda: finish_average(ours(parts, mats, shifts)),
        "stasnake, CTF-weighted": lambda: finish_average(
            accumulate_particles(parts, mats, shifts, TILT, log_every=0, transfers=tables)),
        "stasnake, cubic interpolation": lambda: finish_average(
            accumulate_particles(parts, mats, shifts, TILT, log_every=0, interpolation_order=3)),
        "stage: transfer tables": tables_only,
        "stage: accumulate, CTF-weighted": accumulate_weighted_only,
        "scipy baseline": lambda: finish_average(scipy_baseline(parts, mats, shifts)),
        "stage: rotate": rotate_only,
        "stage: rotate, cubic": rotate_cubic_only,
        "stage: rotate, cubic, scipy map_coordinates": rotate_cubic_scipy,
        "stage: rfftn": fft_only,
        "stage: accumulate": accumulate_only,
    }
    res = common.measure_interleaved(fns, repeats=repeats, warmup=1)
    rows = [
        {
            "box": n,
            "implementation": k,
            "particles": m,
            "min s": r["min"],
            "median s": r["median"],
            "particles/s (min)": m / r["min"],
            "particles/s (median)": m / r["median"],
            "runs": r["n_runs"],
            "discarded": f"{r['discarded']:.0%}",
        }
        for k, r in res.items()
    ]
    return rows, res, agree


# ----------------------------------------------------------------------------- memory child
def _mem_child(stack_path):
    """Average a memmapped MRC stack, sampling RssAnon/RssFile; print a JSON line."""
    from stasnake.io.mrc import read_mrc

    particles, _ = read_mrc(stack_path, mmap=True)
    m = len(particles)
    rng = np.random.default_rng(0)
    mats = random_rotations(m, rng)
    shifts = rng.uniform(-2, 2, (m, 3))
    peaks = {}
    stop = threading.Event()

    rss = common.resident_memory_bytes

    def sample():
        while not stop.is_set():
            for k, v in rss().items():
                peaks[k] = max(peaks.get(k, 0), v)
            time.sleep(0.02)

    baseline = rss()
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    sums = accumulate_particles(particles, mats, shifts, TILT, log_every=0)
    finish_average(sums)
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    print(json.dumps({"wall_s": wall, "baseline": baseline, "peaks": peaks}))


def measure_memory(m, n):
    from stasnake.io.particle_export import write_particle_stack

    stack_bytes = m * n**3 * 4
    with tempfile.TemporaryDirectory(prefix="bench_avg_") as tmp:
        stack_path = Path(tmp) / "particles.mrc"
        rng = np.random.default_rng(0)
        boxes = (rng.standard_normal((n, n, n), dtype=np.float32) for _ in range(m))
        write_particle_stack(stack_path, boxes, m, n, 10.0)  # the layout of results/particles/{ts}/particles.mrc
        cmd = [sys.executable, __file__, "--mem-child", str(stack_path)]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        wall = time.perf_counter() - t0
        if res.returncode:
            raise RuntimeError(res.stderr)
        child = json.loads(res.stdout.strip().splitlines()[-1])
        maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kB on Linux
    return {"stack_bytes": stack_bytes, "ru_maxrss": maxrss, "subprocess_wall_s": wall, **child}


# ----------------------------------------------------------------------------- cuda
def bench_cuda(args):
    """accumulate_particles on the GPU (numba.cuda) vs the CPU path, side by side."""
    from stasnake.kernels.backproject_cuda import cuda_available

    if numba.config.ENABLE_CUDASIM or not cuda_available():
        print("no CUDA GPU (or only the simulator): the CUDA benchmark needs a real GPU; skipped")
        return
    for n, m in zip(args.boxes, args.particles, strict=True):
        rng = np.random.default_rng(n)
        parts = rng.standard_normal((m, n, n, n), dtype=np.float32)
        mats, shifts = random_rotations(m, rng), rng.uniform(-2, 2, (m, 3))
        cpu = accumulate_particles(parts, mats, shifts, TILT, log_every=0)
        gpu = accumulate_particles(parts, mats, shifts, TILT, log_every=0, device="cuda")  # also compiles
        err = float(np.abs(gpu.spectrum - cpu.spectrum).max() / np.abs(cpu.spectrum).max())
        res = common.measure_interleaved(
            {
                "cpu": lambda p=parts, r=mats, s=shifts: accumulate_particles(p, r, s, TILT, log_every=0),
                "cuda": lambda p=parts, r=mats, s=shifts: accumulate_particles(
                    p, r, s, TILT, log_every=0, device="cuda"
                ),
            },
            args.repeats,
            1,
        )
        rows = [
            {"device": k, "min s": r["min"], "median s": r["median"], "particles/s (min)": m / r["min"],
             "runs": r["n_runs"], "discarded": f"{r['discarded']:.0%}"}
            for k, r in res.items()
        ]  # fmt: skip
        print(f"\n## accumulate_particles, {m} particles of {n}^3\n")
        common.print_table(rows)
        print(f"\nmax |cuda - cpu| / max |cpu| (spectrum sum) = {err:.2e}; weights equal: "
              f"{bool(np.array_equal(gpu.weight, cpu.weight))}")  # fmt: skip


# ----------------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--boxes", type=int, nargs="+", default=[32, 64])
    p.add_argument("--particles", type=int, nargs="+", default=[400, 100], help="particles per run, per box")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--mem-particles", type=int, default=2000)
    p.add_argument("--mem-box", type=int, default=64)
    p.add_argument("--mem-child", help=argparse.SUPPRESS)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: only compare the CUDA path with the CPU path (needs a GPU)")  # fmt: skip
    args = p.parse_args(argv)
    if args.mem_child:
        _mem_child(args.mem_child)
        return
    if len(args.particles) != len(args.boxes):
        p.error("--particles needs one count per --boxes entry")
    numba.set_num_threads(os.cpu_count() or 1)
    if args.device == "cuda":
        bench_cuda(args)
        return

    print("## Machine\n")
    for k, v in common.machine_info().items():
        print(f"- {k}: {v}")
    rows, agree_rows, ratio_rows = [], [], []
    for n, m in zip(args.boxes, args.particles, strict=True):
        r, res, agree = bench_box(n, m, args.repeats)
        rows += r
        agree_rows.append({"box": n, **agree})
        ratio_rows.append(
            {"box": n, "stasnake / scipy baseline (rate, min)": res["scipy baseline"]["min"] / res["stasnake"]["min"],
             "(median)": res["scipy baseline"]["median"] / res["stasnake"]["median"],
             "stages / end to end": sum(res[k]["min"] for k in res if k.startswith("stage")) / res["stasnake"]["min"]}
        )  # fmt: skip
    print(f"\n## Throughput (+-60 degree wedge, random poses; {os.cpu_count()} cores)\n")
    common.print_table(rows)
    print("\n## Ratios\n")
    common.print_table(ratio_rows)
    print("\n## Agreement of the averages (stasnake vs scipy baseline)\n")
    common.print_table(agree_rows)

    if not args.no_memory:
        m, n = args.mem_particles, args.mem_box
        print(f"\n## Peak memory of averaging {m} particles of {n}^3 from a memmapped MRC stack\n")
        mem = measure_memory(m, n)
        mb = 1e6
        sb = mem["stack_bytes"]
        mrows = [
            {"quantity": "particle stack (MRC on disk)", "MB": sb / mb, "/ stack": 1.0},
            {"quantity": "ru_maxrss (RUSAGE_CHILDREN)", "MB": mem["ru_maxrss"] / mb, "/ stack": mem["ru_maxrss"] / sb},
            {"quantity": "RSS after imports (baseline)", "MB": mem["baseline"]["VmRSS"] / mb,
             "/ stack": mem["baseline"]["VmRSS"] / sb},
        ]  # fmt: skip
        for k in ("RssAnon", "RssFile", "VmRSS"):
            if k in mem["peaks"]:
                mrows.append({"quantity": f"peak {k} (sampled 50 Hz)", "MB": mem["peaks"][k] / mb,
                              "/ stack": mem["peaks"][k] / sb})  # fmt: skip
        common.print_table(mrows)
        print(f"\nchild wall time {mem['wall_s']:.2f} s ({m / mem['wall_s']:.0f} particles/s incl. reading)")


if __name__ == "__main__":
    main()
