"""Small benchmark harness for a shared, noisy 2-vCPU machine.

Rules (see /work/shared/performance-notes.md):

* Compared implementations run side by side in one process, interleaved
  round-robin (:func:`measure_interleaved`), so that slow periods of the machine
  hit all of them alike.
* Each timed run reads ``/proc/stat`` before and after. The CPU time used by
  *other* processes during the run is estimated as

      other = (busy jiffies of all CPUs, incl. steal) / CLK_TCK
              - (this process's user + system CPU time, incl. waited-for children)

  where "busy" is user + nice + system + irq + softirq + steal (idle and iowait
  excluded) and this process's time comes from :func:`os.times` (all threads).
  A run is **discarded** when ``other > OTHER_FRACTION * wall * n_cpus + SLACK_S``,
  i.e. when other processes took more than 10 % of the machine's core-seconds
  during the run (plus 3 jiffies of slack for the 10 ms counter resolution).
  Discarded runs are repeated, up to ``max_attempts``; if no run is clean the
  statistics fall back to all runs and ``clean`` is False.
* Report min and median; ratios between implementations are the result, not
  absolute timings.

Set ``OMP_WAIT_POLICY=PASSIVE`` before numba is imported (``import benchmarks.common``
or running a script from this folder does it via :func:`setup_env`).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

OTHER_FRACTION = 0.10
SLACK_S = 0.03


def setup_env() -> None:
    """Set environment variables that must precede importing numba / OpenMP."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


setup_env()


def _proc_stat_busy_s() -> float:
    """Busy CPU seconds of the whole machine since boot (aggregate ``cpu`` line)."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    # cpu user nice system idle iowait irq softirq steal guest guest_nice
    vals = [int(v) for v in fields[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = vals[:7]
    steal = vals[7] if len(vals) > 7 else 0
    # guest time is already included in user/nice
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def timed_run(fn: Callable[[], object]) -> tuple[float, float]:
    """Run ``fn`` once; return (wall seconds, other processes' CPU seconds)."""
    busy0, own0 = _proc_stat_busy_s(), _own_cpu_s()
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    busy1, own1 = _proc_stat_busy_s(), _own_cpu_s()
    other = max(0.0, (busy1 - busy0) - (own1 - own0))
    return wall, other


def is_clean(wall: float, other: float, n_cpus: int | None = None) -> bool:
    """The discard rule: other processes used <= 10 % of the core-seconds (+ slack)."""
    n_cpus = n_cpus or os.cpu_count() or 1
    return other <= OTHER_FRACTION * wall * n_cpus + SLACK_S


def _summary(walls: list[float], others: list[float], repeats: int) -> dict:
    clean = [w for w, o in zip(walls, others, strict=True) if is_clean(w, o)]
    use = clean[:repeats] if clean else walls
    return {
        "min": min(use),
        "median": statistics.median(use),
        "n_runs": len(walls),
        "n_clean": len(clean),
        "discarded": 1.0 - len(clean) / len(walls),
        "clean": bool(clean),
        "max_other_cpu_s": max(others),
    }


def measure(fn: Callable[[], object], repeats: int = 5, warmup: int = 1, max_attempts: int | None = None) -> dict:
    """Time ``fn``: ``warmup`` untimed calls, then runs until ``repeats`` clean ones.

    Returns
    -------
    dict
        ``min`` and ``median`` seconds (over clean runs), ``n_runs``, ``n_clean``,
        ``discarded`` (fraction of runs discarded because /proc/stat showed other
        processes busy), ``clean`` (False when every run was discarded and the
        statistics use all runs) and ``max_other_cpu_s``.
    """
    return measure_interleaved({"fn": fn}, repeats, warmup, max_attempts)["fn"]


def measure_interleaved(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1,
                        max_attempts: int | None = None) -> dict[str, dict]:
    """Like :func:`measure` for several implementations, run round-robin side by side."""
    max_attempts = max_attempts or 2 * repeats
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    walls: dict[str, list[float]] = {k: [] for k in fns}
    others: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max_attempts):
        pending = [k for k in fns
                   if sum(is_clean(w, o) for w, o in zip(walls[k], others[k], strict=True)) < repeats]
        if not pending:
            break
        for k in pending:
            w, o = timed_run(fns[k])
            walls[k].append(w)
            others[k].append(o)
    return {k: _summary(walls[k], others[k], repeats) for k in fns}


def resident_memory_bytes() -> dict:
    """This process's RssAnon, RssFile and VmRSS from /proc/self/status, in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon", "RssFile", "VmRSS")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def machine_info() -> dict:
    """CPU model, logical cores, numba threads, library versions."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": model, "logical_cores": os.cpu_count(), "python": platform.python_version()}
    try:
        import numba
        import numpy

        info["numba_threads"] = numba.get_num_threads()
        info["numba"] = numba.__version__
        info["numpy"] = numpy.__version__
    except ImportError:
        pass
    info["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "")
    return info


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Format a list of dicts as a markdown table (floats to 3 significant digits)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    """Print :func:`markdown_table`."""
    print(markdown_table(rows, columns))
