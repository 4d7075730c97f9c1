"""Benchmark weighted back-projection (WBP) against scikit-image, ASTRA and numpy.

Run from the repository root::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_wbp.py [--size 384 --thickness 160 --tilts 41 --repeats 5]

One random aligned stack (n_tilts, size, size), tilts evenly spaced over
+-60 degrees, is reconstructed into (thickness, size, size) by

* ``stasnake``: :func:`stasnake.tilt.reconstruct.reconstruct_wbp`, end to end
  (ramp filter + numba back-projection, numba threads = all cores), and its
  kernel alone (:func:`backproject_slab` on a prepared slab, written ny/slab
  times into the y-slabs of a (z, y, x) volume);
* ``skimage iradon``: ``skimage.transform.iradon(circle=False, filter_name="ramp")``
  slice by slice over y. iradon only makes square slices, so each slice is
  size x size instead of thickness x size (more voxels); rates count the voxels
  it actually computes;
* ``astra FBP_CPU``: astra-toolbox 2-D parallel-beam ``FBP`` (ram-lak, linear
  projector) slice by slice with a thickness x size volume geometry, if
  ``import astra`` works (skipped otherwise);
* ``numpy naive``: vectorised per-tilt gather back-projection in plain numpy on
  a reduced number of y rows (``--naive-rows``);
* ``roofline``: a trivial numba loop nest (z parallel, tilt, x, y contiguous)
  doing one fused multiply-add per voxel-update with no interpolation: a
  *compute* reference measured on this machine (back-projection is not
  memory-bandwidth bound: the slab stays in cache). It loads and stores the
  accumulator once per tilt (the loop nest of the first kernel);
* ``roofline-g4``: the same one FMA per update with no interpolation, in the
  loop nest of the current kernel ((z, x-tile) tiles in parallel, a per-tile
  accumulator, four tilts per pass over it, transposed write into the
  (z, y, x) volume). Our kernel needs two FMAs plus the interpolation set-up
  per update, so it cannot reach it.

Rates are voxel-updates per second (n_tilts * nx * ny * nz / time). Timings
use :mod:`benchmarks.common` (interleaved runs, min and median, runs discarded
when other processes used the CPU).

``--memory`` (on by default) also measures the peak memory of
:func:`reconstruct_wbp_to_mrc` writing a ``--mem-shape`` tomogram into an MRC
memmap, in a subprocess (``ru_maxrss`` of RUSAGE_CHILDREN, plus sampled
RssAnon/RssFile from /proc/self/status).
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

from stasnake.kernels.backproject import TILT_GROUP, backproject_slab  # noqa: E402
from stasnake.tilt.reconstruct import (  # noqa: E402
    _filtered_projections,
    _padded_length,
    ramp_filter,
    reconstruct_wbp,
    reconstruct_wbp_to_mrc,
    tilt_weights,
)

RESULTS = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------------------- rooflines
@numba.njit(parallel=True, fastmath=True)
def _roofline_fma(proj_tuy, weights, nz, nx, out_zxy):
    """Plain loop nest (z parallel, tilt, x, y contiguous), one FMA per voxel-update, no interpolation.

    The loop nest of the first version of backproject_slab; the accumulator row
    is loaded and stored once per tilt.
    """
    n_t, _, sy = proj_tuy.shape
    for iz in numba.prange(nz):
        for t in range(n_t):
            w = weights[t]
            for ix in range(nx):
                for y in range(sy):
                    out_zxy[iz, ix, y] += w * proj_tuy[t, ix + 1, y]


@numba.njit(parallel=True, fastmath=True)
def _roofline_fma_grouped(proj_tuy, weights, nz, nx, out_zyx, tile_x):
    """The loop nest of backproject_slab, one FMA per voxel-update, no interpolation.

    (z, x-tile) tiles in parallel, a per-tile (x, y) accumulator, 4 tilts summed
    per pass over it, y contiguous, transposed write into the (z, y, x) output:
    everything but the interpolation (set-up pass and the second FMA per update).
    """
    n_t, _, sy = proj_tuy.shape
    n_xt = (nx + tile_x - 1) // tile_x
    for tile in numba.prange(nz * n_xt):
        iz = tile // n_xt
        x0 = (tile % n_xt) * tile_x
        nxb = min(tile_x, nx - x0)
        acc = np.zeros((tile_x, sy), np.float32)
        t0 = 0
        while t0 < n_t:
            if t0 + 4 <= n_t:
                w0, w1, w2, w3 = weights[t0], weights[t0 + 1], weights[t0 + 2], weights[t0 + 3]
                for j in range(nxb):
                    for y in range(sy):
                        acc[j, y] += ((w0 * proj_tuy[t0, x0 + j + 1, y] + w1 * proj_tuy[t0 + 1, x0 + j + 1, y])
                                      + (w2 * proj_tuy[t0 + 2, x0 + j + 1, y] + w3 * proj_tuy[t0 + 3, x0 + j + 1, y]))
                t0 += 4
            else:
                w0 = weights[t0]
                for j in range(nxb):
                    for y in range(sy):
                        acc[j, y] += w0 * proj_tuy[t0, x0 + j + 1, y]
                t0 += 1
        for y in range(sy):
            for j in range(nxb):
                out_zyx[iz, y, x0 + j] = acc[j, y]


# ----------------------------------------------------------------------------- peers
def iradon_stack(stack, angles, output_size):
    from skimage.transform import iradon

    n_t, ny, nu = stack.shape
    out = np.empty((ny, output_size, output_size), np.float32)
    for y in range(ny):
        out[y] = iradon(stack[:, y, :].T, theta=angles, circle=False, filter_name="ramp",
                        output_size=output_size)
    return out


class AstraFBP:
    """astra-toolbox CPU FBP, one 2-D parallel slice at a time (objects reused)."""

    def __init__(self, angles_deg, nu, nz):
        import astra

        self.astra = astra
        self.vol_geom = astra.create_vol_geom(nz, nu)  # rows = Z, cols = X
        self.proj_geom = astra.create_proj_geom("parallel", 1.0, nu, np.radians(angles_deg))
        self.proj_id = astra.create_projector("linear", self.proj_geom, self.vol_geom)
        self.sino_id = astra.data2d.create("-sino", self.proj_geom, 0.0)
        self.rec_id = astra.data2d.create("-vol", self.vol_geom, 0.0)
        cfg = astra.astra_dict("FBP")
        cfg["ProjectorId"] = self.proj_id
        cfg["ProjectionDataId"] = self.sino_id
        cfg["ReconstructionDataId"] = self.rec_id
        cfg["FilterType"] = "ram-lak"
        self.alg_id = astra.algorithm.create(cfg)
        self.nz, self.nu = nz, nu

    def __call__(self, stack):
        a = self.astra
        n_t, ny, nu = stack.shape
        out = np.empty((ny, self.nz, self.nu), np.float32)
        for y in range(ny):
            a.data2d.store(self.sino_id, stack[:, y, :])
            a.algorithm.run(self.alg_id)
            out[y] = a.data2d.get_shared(self.rec_id)
        return out

    def close(self):
        a = self.astra
        a.algorithm.delete(self.alg_id)
        a.data2d.delete([self.sino_id, self.rec_id])
        a.projector.delete(self.proj_id)


def numpy_naive(stack, angles, nz):
    """Plain numpy WBP: ramp filter, then per tilt a vectorised gather over (z, x, y)."""
    n_t, ny, nu = stack.shape
    n_pad = _padded_length(nu)
    resp = ramp_filter(n_pad)
    filt = np.fft.irfft(np.fft.rfft(stack, n=n_pad, axis=-1) * resp, n=n_pad, axis=-1)[..., :nu]
    filt = filt.astype(np.float32)
    w = tilt_weights(angles)
    z = (np.arange(nz) - nz // 2)[:, None]
    x = (np.arange(nu) - nu // 2)[None, :]
    vol = np.zeros((ny, nz, nu), np.float32)
    for t, a in enumerate(np.radians(angles)):
        u = nu // 2 + x * np.cos(a) + z * np.sin(a)
        i0 = np.floor(u).astype(np.intp)
        f = (u - i0).astype(np.float32)
        ok = (i0 >= 0) & (i0 + 1 < nu)
        i0c = np.clip(i0, 0, nu - 2)
        p = filt[t]  # (ny, nu)
        vol += w[t] * ok * ((1 - f) * p[:, i0c] + f * p[:, i0c + 1])
    return vol.transpose(1, 0, 2)


# ----------------------------------------------------------------------------- checks
def corr(a, b):
    a = a.ravel() - a.mean()
    b = b.ravel() - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def compare_slices(ours, other_zx, ys, mask_radius):
    """Correlation over y-slices, within |X| < mask_radius (away from the detector edge)."""
    nz, _, nu = ours.shape
    x = np.arange(nu) - nu // 2
    keep = np.abs(x) < mask_radius
    rs, scale = [], []
    for y in ys:
        a = ours[:, y, keep]
        b = other_zx(y)[:, keep]
        rs.append(corr(a, b))
        scale.append(float(np.std(b) / np.std(a)))
    return min(rs), float(np.median(scale))


# ----------------------------------------------------------------------------- memory child
def _mem_child(stack_path, out_path, thickness, slab):
    """Run reconstruct_wbp_to_mrc, sampling RssAnon/RssFile; print a JSON line."""
    import mrcfile.mrcobject

    from stasnake.io.mrc import read_mrc

    stack, _ = read_mrc(stack_path, mmap=True)
    phase = {"name": "reconstruct"}
    peaks = {}
    stop = threading.Event()

    rss = common.resident_memory_bytes

    def sample():
        while not stop.is_set():
            d = rss()
            p = peaks.setdefault(phase["name"], {})
            for k, v in d.items():
                p[k] = max(p.get(k, 0), v)
            time.sleep(0.02)

    baseline = rss()
    orig = mrcfile.mrcobject.MrcObject.update_header_stats

    def marked(self):
        phase["name"] = "update_header_stats"
        phase["t_stats_start"] = time.perf_counter()
        r = orig(self)
        phase["t_stats_end"] = time.perf_counter()
        return r

    mrcfile.mrcobject.MrcObject.update_header_stats = marked
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    reconstruct_wbp_to_mrc(stack, np.linspace(-60, 60, stack.shape[0]), thickness, out_path,
                           pixel_size_angstrom=10.0, slab_size=slab)
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    stats_s = phase.get("t_stats_end", t0) - phase.get("t_stats_start", t0)
    print(json.dumps({"wall_s": wall, "header_stats_s": stats_s, "baseline": baseline, "peaks": peaks}))


def measure_memory(n_t, ny, nu, nz, slab):
    import mrcfile

    tomo_bytes = nz * ny * nu * 4
    with tempfile.TemporaryDirectory(prefix="bench_wbp_") as tmp:
        stack_path = Path(tmp) / "stack.mrc"
        out_path = Path(tmp) / "tomo.mrc"
        rng = np.random.default_rng(0)
        with mrcfile.new_mmap(stack_path, shape=(n_t, ny, nu), mrc_mode=2) as m:
            for t in range(n_t):
                m.data[t] = rng.standard_normal((ny, nu), dtype=np.float32)
        cmd = [sys.executable, __file__, "--mem-child", str(stack_path), str(out_path), str(nz), str(slab)]
        t0 = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
        wall = time.perf_counter() - t0
        if res.returncode:
            raise RuntimeError(res.stderr)
        child = json.loads(res.stdout.strip().splitlines()[-1])
        maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # kB on Linux
        assert out_path.stat().st_size >= tomo_bytes
    return {"shape_in": (n_t, ny, nu), "shape_out": (nz, ny, nu), "tomo_bytes": tomo_bytes,
            "ru_maxrss": maxrss, "subprocess_wall_s": wall, **child}


# ----------------------------------------------------------------------------- main
def bench_cuda(args):
    """reconstruct_wbp on the GPU (numba.cuda) vs the CPU path, end to end, side by side."""
    from stasnake.kernels.backproject_cuda import cuda_available

    if numba.config.ENABLE_CUDASIM or not cuda_available():
        print("no CUDA GPU (or only the simulator): the CUDA benchmark needs a real GPU; skipped")
        return
    numba.set_num_threads(os.cpu_count() or 1)
    n_t, n, nz = args.tilts, args.size, args.thickness
    angles = np.linspace(-60.0, 60.0, n_t)
    stack = np.random.default_rng(0).standard_normal((n_t, n, n), dtype=np.float32)
    cpu = reconstruct_wbp(stack, angles, nz, slab_size=args.slab)
    gpu = reconstruct_wbp(stack, angles, nz, slab_size=args.slab, device="cuda")  # also compiles
    err = float(np.abs(gpu - cpu).max() / np.abs(cpu).max())
    res = common.measure_interleaved(
        {"cpu": lambda: reconstruct_wbp(stack, angles, nz, slab_size=args.slab),
         "cuda": lambda: reconstruct_wbp(stack, angles, nz, slab_size=args.slab, device="cuda")},
        args.repeats, 1)
    upd = n_t * n * n * nz
    rows = [{"device": k, "min s": r["min"], "median s": r["median"], "G upd/s (min)": upd / r["min"] / 1e9,
             "runs": r["n_runs"], "discarded": f"{r['discarded']:.0%}"} for k, r in res.items()]
    print(f"\n## reconstruct_wbp {n_t} x {n} x {n} -> {nz} x {n} x {n}, slab {args.slab}\n")
    common.print_table(rows)
    print(f"\nmax |cuda - cpu| / max |cpu| = {err:.2e}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=384, help="nx = ny = detector width (px)")
    p.add_argument("--thickness", type=int, default=160)
    p.add_argument("--tilts", type=int, default=41)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--slab", type=int, default=64)
    p.add_argument("--peer-repeats", type=int, default=3, help="repeats for the slow peers (iradon, astra, numpy)")
    p.add_argument("--naive-rows", type=int, default=32, help="y rows for the numpy naive reference")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--mem-shape", type=int, nargs=4, default=[41, 1024, 1024, 400],
                   metavar=("TILTS", "NY", "NX", "NZ"))
    p.add_argument("--mem-child", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="cuda: only compare reconstruct_wbp(device='cuda') with the CPU path (needs a GPU)")
    args = p.parse_args(argv)

    if args.mem_child:
        s, o, nz, slab = args.mem_child
        _mem_child(s, o, int(nz), int(slab))
        return
    if args.device == "cuda":
        bench_cuda(args)
        return

    numba.set_num_threads(os.cpu_count() or 1)
    info = common.machine_info()
    print("## Machine\n")
    for k, v in info.items():
        print(f"- {k}: {v}")

    n_t, n, nz = args.tilts, args.size, args.thickness
    angles = np.linspace(-60.0, 60.0, n_t)
    rng = np.random.default_rng(0)
    stack = rng.standard_normal((n_t, n, n), dtype=np.float32)
    upd_ours = n_t * n * n * nz
    print(f"\nstack {n_t} x {n} x {n} -> volume {nz} x {n} x {n} (z, y, x); "
          f"{upd_ours / 1e9:.3f} G voxel-updates\n")

    # ---- our kernel alone and the rooflines, on prepared slabs
    slab = args.slab
    sy = min(slab, n)
    n_slabs = -(-n // slab)
    n_pad = _padded_length(n)
    proj = _filtered_projections(stack[:, :sy], ramp_filter(n_pad), n_pad, os.cpu_count() or 1)
    rad = np.radians(angles)
    cos_t, sin_t = np.cos(rad).astype(np.float32), np.sin(rad).astype(np.float32)
    w = tilt_weights(angles).astype(np.float32)
    acc = np.zeros((nz, n, sy), np.float32)
    vol = np.zeros((nz, n_slabs * sy, n), np.float32)  # kernel output, slab by slab
    tile_x = min(n, 32768 // sy)  # backproject_slab's default

    def kernel_only():
        for i in range(n_slabs):
            backproject_slab(proj, cos_t, sin_t, w, nz, n, vol[:, i * sy:(i + 1) * sy])

    def roofline():
        for _ in range(n_slabs):
            _roofline_fma(proj, w, nz, n, acc)

    def roofline_grouped():
        for i in range(n_slabs):
            _roofline_fma_grouped(proj, w, nz, n, vol[:, i * sy:(i + 1) * sy], tile_x)

    def ours():
        return reconstruct_wbp(stack, angles, nz, slab_size=slab)

    fast = common.measure_interleaved({"ours": ours, "kernel": kernel_only, "roofline": roofline,
                                       "roofline-g4": roofline_grouped},
                                      repeats=args.repeats, warmup=1)
    del vol
    upd_kernel = n_t * n * nz * sy * n_slabs

    # ---- slow peers, interleaved with each other (and a run of ours for the ratio)
    peers = {"ours": ours, "iradon": lambda: iradon_stack(stack, angles, n)}
    astra_fbp = None
    astra_msg = "not tried"
    try:
        astra_fbp = AstraFBP(angles, n, nz)
        peers["astra"] = lambda: astra_fbp(stack)
        import astra

        astra_msg = f"astra-toolbox {astra.__version__} (CUDA available: {astra.use_cuda()})"
    except Exception as e:  # noqa: BLE001  (ImportError or astra runtime errors)
        astra_msg = f"skipped: {type(e).__name__}: {e}"
    naive_stack = np.ascontiguousarray(stack[:, : args.naive_rows])
    peers["numpy"] = lambda: numpy_naive(naive_stack, angles, nz)
    slow = common.measure_interleaved(peers, repeats=args.peer_repeats, warmup=0)

    # ---- agreement of the outputs, on 3 rows of the same stack cropped to odd sizes, where
    # all conventions put the centre on a voxel (astra centres at (n - 1) / 2, ours at n // 2)
    nu_c, nz_c = n - (1 - n % 2), nz - (1 - nz % 2)
    ys = [n // 4, n // 2, 3 * n // 4]
    st_c = np.ascontiguousarray(stack[:, ys, :nu_c])
    vol = reconstruct_wbp(st_c, angles, nz_c)
    rad_ = nu_c // 2
    rows_c = rad_ - (np.arange(nz_c) - nz_c // 2)  # iradon row = radius - Z
    ir = iradon_stack(st_c, angles, nu_c)
    checks = {"iradon": compare_slices(vol, lambda i: ir[i][rows_c], range(3), rad_ - 2)}
    if astra_fbp is not None:
        astra_fbp.close()
        fbp_c = AstraFBP(angles, nu_c, nz_c)
        a_vol = fbp_c(st_c)
        fbp_c.close()
        best = None
        for name, fz, fx in (("as is", False, False), ("Z flipped", True, False),
                             ("X flipped", False, True), ("Z and X flipped", True, True)):
            def zx(i, fz=fz, fx=fx):
                s = a_vol[i]
                s = s[::-1] if fz else s
                return s[:, ::-1] if fx else s
            r = compare_slices(vol, zx, range(3), rad_ - 2)
            if best is None or r[0] > best[1][0]:
                best = (name, r)
        checks["astra"] = best[1]
        checks["astra_orientation"] = best[0]
    nv = numpy_naive(st_c, angles, nz_c)
    checks["numpy"] = compare_slices(vol, lambda i: nv[:, i, :], range(3), rad_ - 2)

    # ---- report
    upd = {"ours": upd_ours, "kernel": upd_kernel, "roofline": upd_kernel, "roofline-g4": upd_kernel,
           "iradon": n_t * n * n * n, "astra": upd_ours, "numpy": n_t * args.naive_rows * n * nz}
    geom = {"ours": f"{nz}x{n}x{n}", "kernel": f"{nz}x{n}x{n}", "roofline": f"{nz}x{n}x{n} (1 FMA, no interp.)",
            "roofline-g4": f"{nz}x{n}x{n} (1 FMA, no interp.)",
            "iradon": f"{n}x{n}x{n} (square slices)", "astra": f"{nz}x{n}x{n}",
            "numpy": f"{nz}x{args.naive_rows}x{n}"}
    threads = {"ours": info.get("numba_threads"), "kernel": info.get("numba_threads"),
               "roofline": info.get("numba_threads"), "roofline-g4": info.get("numba_threads"),
               "iradon": 1, "astra": 1, "numpy": 1}
    rows, raw = [], {}
    for group in (fast, slow):
        for k, r in group.items():
            label = k if group is fast else f"{k} (vs peers)" if k == "ours" else k
            rate_best = upd[k] / r["min"] / 1e9
            rate_med = upd[k] / r["median"] / 1e9
            rows.append({"implementation": label, "volume (z x y x x)": geom[k], "threads": threads[k],
                         "min s": r["min"], "median s": r["median"],
                         "G upd/s (min)": rate_best, "G upd/s (median)": rate_med,
                         "runs": r["n_runs"], "discarded": f"{r['discarded']:.0%}"})
            raw[label] = {**r, "updates": upd[k], "rate_best": rate_best * 1e9}
    print("\n## Timings\n")
    common.print_table(rows)

    def rate(label):
        return raw[label]["rate_best"]

    ours_peer = "ours (vs peers)"
    print("\n## Ratios (voxel-update rate, from min times)\n")
    ratio_rows = [
        {"ratio": "ours / iradon (rate)", "value": rate(ours_peer) / rate("iradon")},
        {"ratio": "ours / iradon (time for our volume vs iradon's square slices)",
         "value": raw["iradon"]["min"] / raw[ours_peer]["min"]},
    ]
    if "astra" in raw:
        ratio_rows.append({"ratio": "ours / astra (rate = time, same volume)", "value": rate(ours_peer) / rate("astra")})
    ratio_rows += [
        {"ratio": "ours / numpy naive (rate)", "value": rate(ours_peer) / rate("numpy")},
        {"ratio": "kernel / roofline (1 FMA per update, plain loop nest)", "value": rate("kernel") / rate("roofline")},
        {"ratio": f"kernel / roofline-g4 (1 FMA per update, kernel's loop nest, {TILT_GROUP} tilts per pass)",
         "value": rate("kernel") / rate("roofline-g4")},
        {"ratio": "ours end to end / roofline", "value": rate("ours") / rate("roofline")},
        {"ratio": "kernel share of end-to-end time", "value": raw["kernel"]["min"] / raw["ours"]["min"]},
    ]
    common.print_table(ratio_rows)
    print(f"\nastra: {astra_msg}")

    print(f"\n## Agreement with ours (3 y-rows cropped to {nz_c} x {nu_c}; min correlation over the rows, "
          "|X| < size/2 - 2; std ratio other/ours)\n")
    agree = [{"peer": k, "min corr": v[0], "std ratio": v[1]} for k, v in checks.items() if k != "astra_orientation"]
    common.print_table(agree)
    print("\nGeometry: iradon slice img[row, col] = ours[z, y, x] with row = size//2 - Z (Z flipped), "
          "col = x; iradon output is square (size x size) so it computes size/thickness = "
          f"{n / nz:.2f}x more voxels per slice. iradon's ramp is 2|f| and it scales by pi/(2 n_tilts) "
          f"(assumes 180 deg), ours uses |f| and each tilt's angular interval: expected std ratio "
          f"{2 * (np.pi / (2 * n_t)) / float(np.median(tilt_weights(angles))):.2f}.")
    if "astra_orientation" in checks:
        print(f"astra orientation that matches ours: {checks['astra_orientation']}.")

    mem = None
    if not args.no_memory:
        mt, my, mx, mz = args.mem_shape
        print(f"\n## Peak memory of reconstruct_wbp_to_mrc ({mt}x{my}x{mx} -> {mz}x{my}x{mx} float32)\n")
        mem = measure_memory(mt, my, mx, mz, slab)
        gb = 1e9
        tb = mem["tomo_bytes"]
        peaks = mem["peaks"]
        mrows = [{"quantity": "tomogram size", "GB": tb / gb, "/ tomogram": 1.0},
                 {"quantity": "input stack (MRC, memmap)", "GB": mt * my * mx * 4 / gb, "/ tomogram": mt * my * mx * 4 / tb},
                 {"quantity": "ru_maxrss (RUSAGE_CHILDREN)", "GB": mem["ru_maxrss"] / gb, "/ tomogram": mem["ru_maxrss"] / tb},
                 {"quantity": "RSS after imports (baseline)", "GB": mem["baseline"]["VmRSS"] / gb,
                  "/ tomogram": mem["baseline"]["VmRSS"] / tb}]
        for ph, d in peaks.items():
            for k in ("RssAnon", "RssFile"):
                if k in d:
                    mrows.append({"quantity": f"peak {k} during {ph} (sampled 50 Hz)", "GB": d[k] / gb,
                                  "/ tomogram": d[k] / tb})
        common.print_table(mrows)
        rate = mt * my * mx * mz / (mem["wall_s"] - mem["header_stats_s"]) / 1e9
        print(f"\nreconstruct_wbp_to_mrc took {mem['wall_s']:.1f} s, of which mrcfile update_header_stats "
              f"{mem['header_stats_s']:.1f} s (rest: {rate:.2f} G voxel-updates/s incl. filter and memmap writes) "
              f"(subprocess incl. imports and numba compilation {mem['subprocess_wall_s']:.1f} s).")

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"bench_wbp-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": info, "args": vars(args), "timings": raw, "ratios": ratio_rows,
                               "agreement": checks, "astra": astra_msg, "memory": mem}, indent=1, default=str))
    print(f"\nraw results: {out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out}")


if __name__ == "__main__":
    main()
