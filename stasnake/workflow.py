"""Glue for the rule scripts in scripts/: logging, threads and clean errors.

Every script calls :func:`run_rule` with a ``main(snakemake)`` function, so
that logs go to the rule's log file, numba uses the rule's thread count (it
ignores Snakemake's OMP/MKL variables), and bad input ends the job with one
clear line instead of a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

# Spinning OpenMP threads steal cores from threaded FFTs (performance notes).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from stasnake.errors import InputError  # noqa: E402

log = logging.getLogger("stasnake")


def configure_logging(log_path: str | None = None, level: int = logging.INFO) -> None:
    """Send stasnake's log records (and warnings) to ``log_path`` or stderr."""
    handler = logging.FileHandler(log_path, mode="w") if log_path else logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)


def set_threads(n_threads: int) -> None:
    """Limit numba (and threaded FFTs via ``STASNAKE_THREADS``) to ``n_threads``."""
    import numba

    n = max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    os.environ["STASNAKE_THREADS"] = str(n)


def run_rule(snakemake, main: Callable) -> None:
    """Run ``main(snakemake)`` with logging, threads and error handling set up.

    Parameters
    ----------
    snakemake : snakemake.script.Snakemake
        The object Snakemake injects into rule scripts.
    main : callable
        Does the work; reads ``snakemake.input``/``params``, writes outputs.
    """
    log_path = snakemake.log[0] if len(snakemake.log) else None
    configure_logging(log_path)
    if log_path:
        sys.stderr = open(log_path, "a", buffering=1)  # numba/numpy warnings land in the log too
    set_threads(snakemake.threads)
    log.info("rule %s, wildcards %s, %d thread(s)", snakemake.rule, dict(snakemake.wildcards), snakemake.threads)
    try:
        main(snakemake)
    except InputError as exc:
        log.error("%s", exc)
        print(f"stasnake: error: {exc}", file=sys.__stderr__)
        sys.exit(1)
    log.info("done")


def threads() -> int:
    """Thread count chosen by :func:`set_threads` (for scipy.fft ``workers``)."""
    return int(os.environ.get("STASNAKE_THREADS", os.cpu_count() or 1))
