"""The SLURM profile: GPU-capable rules ask SLURM for a GPU when device is cuda.

A stub ``sbatch`` on PATH records what would be submitted; no cluster is needed.
"""

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.test_workflow import base_config

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("snakemake_executor_plugin_slurm")

STUBS = {
    "sbatch": '#!/bin/sh\necho "$@" >> "$SBATCH_LOG"\ncat > /dev/null\necho 4242\n',
    "sacct": "#!/bin/sh\necho '4242|FAILED'\n",
    "sacctmgr": "#!/bin/sh\necho testaccount\n",
    "squeue": "#!/bin/sh\nexit 0\n",
    "scontrol": "#!/bin/sh\nexit 0\n",
    "scancel": "#!/bin/sh\nexit 0\n",
}


@pytest.fixture
def workdir(tmp_path):
    """A run folder whose aligned stack exists, so reconstruct_tomogram is the next job."""
    for name in ("a.mrc", "a.mdoc", "a.xf", "t.tbl"):
        (tmp_path / name).write_text("x")
    (tmp_path / "tomograms.tsv").write_text("name\ttilt_series\tmdoc\talignment_xf\nTS_01\ta.mrc\ta.mdoc\ta.xf\n")
    series = tmp_path / "results" / "tiltseries" / "TS_01"
    series.mkdir(parents=True)
    for name in ("TS_01_ali.mrc", "TS_01.tlt"):
        (series / name).write_text("x")
    cfg = base_config()
    cfg.update(samples="tomograms.tsv", device="cuda")
    cfg["picking"]["import_table"] = "{ts}.tbl"
    cfg["validation"]["truth_map"] = None
    cfg["ctf"]["phase_flip"] = False  # reconstruct straight from the aligned stack
    cfg["dose_weighting"]["enabled"] = False
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, text in STUBS.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(stat.S_IRWXU)
    return tmp_path


def command(workdir, *args):
    return [sys.executable, "-m", "snakemake", "results/tomograms/TS_01.mrc", "-s", str(REPO / "Snakefile"),
            "--profile", str(REPO / "profiles" / "slurm"), "--configfile", str(workdir / "config.yaml"),
            "--directory", str(workdir), "--default-resources", "slurm_account=testaccount",
            "slurm_partition=gpu", "mem_mb=8000", "runtime=120", "--allowed-rules", "reconstruct_tomogram",
            *args]  # fmt: skip


def test_dry_run_of_the_slurm_profile_plans_a_gpu_job(workdir):
    result = subprocess.run(command(workdir, "-n"), capture_output=True, text=True, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    job = result.stdout.split("rule reconstruct_tomogram:")[1].split("\n\n")[0]
    assert "gpu=1" in job


def test_gpu_rule_submission_asks_slurm_for_a_gpu(workdir):
    log = workdir / "sbatch.log"
    env = dict(os.environ, PATH=f"{workdir / 'bin'}{os.pathsep}{os.environ['PATH']}", SBATCH_LOG=str(log))
    proc = subprocess.Popen(command(workdir, "--retries", "0"), cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not log.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        proc.kill()
        output = proc.communicate()[0]
    assert log.exists(), output[-3000:]
    submission = log.read_text()
    assert "--gpus=1" in submission
    assert "--cpus-per-task=2" in submission and "--mem 8000" in submission and "-t 60" in submission
    assert "reconstruct_tomogram" in submission


def test_no_default_profile_overrides_the_cluster_profile():
    """profiles/default/ would be applied on top of profiles/slurm key by key."""
    assert not (REPO / "profiles" / "default").exists()
    assert (REPO / "profiles" / "local" / "config.yaml").exists()
