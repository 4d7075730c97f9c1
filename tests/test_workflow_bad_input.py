"""Bad tilt-series input stops only that tilt series' job, with one clear message; the rest go on.

One good tiny series and one broken copy per kind of bad input, run with
``--keep-going``: the good tomogram is made, each broken series' log names
its file and problem, and the failing job leaves no output behind.
"""

import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

from stasnake.io.imod import read_xf, write_xf
from stasnake.io.mdoc import read_mdoc, write_mdoc
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.synth import SynthConfig, generate_dataset
from tests.test_workflow import snakemake, write_run_config

pytestmark = pytest.mark.integration


def broken_copies(data, folder):
    """(name, stack, mdoc, alignment_xf) rows: TS_01 good, TS_02..TS_05 broken one way each."""
    stack, apix = read_mrc(data / "tiltseries/TS_01.mrc")
    header, sections = read_mdoc(data / "tiltseries/TS_01.mrc.mdoc")
    good_stack, good_mdoc = data / "tiltseries/TS_01.mrc", data / "tiltseries/TS_01.mrc.mdoc"
    write_mrc(folder / "TS_02.mrc", stack[:-1], apix, stack=True)  # one image short of its mdoc
    write_xf(folder / "TS_03.xf", read_xf(data / "truth/TS_01/alignment.xf")[:-2])  # two lines short
    no_pixel = {k: v for k, v in header.items() if k != "PixelSpacing"}
    write_mdoc(folder / "TS_04.mrc.mdoc", no_pixel, sections.drop(columns="PixelSpacing"))
    beam_off = np.random.default_rng(0).poisson(0.5, stack.shape).astype(np.float32)  # stray counts only
    write_mrc(folder / "TS_05.mrc", beam_off, apix, stack=True)
    return [
        ("TS_01", good_stack, good_mdoc, ""),
        ("TS_02", folder / "TS_02.mrc", good_mdoc, ""),
        ("TS_03", good_stack, good_mdoc, folder / "TS_03.xf"),
        ("TS_04", good_stack, folder / "TS_04.mrc.mdoc", ""),
        ("TS_05", folder / "TS_05.mrc", good_mdoc, ""),
    ]


@pytest.fixture(scope="module")
def keep_going_run(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    config = dataclasses.replace(SynthConfig.tiny(), seed=3)
    generate_dataset(data, config)
    folder = tmp_path_factory.mktemp("broken")
    workdir = tmp_path_factory.mktemp("run")
    rows = broken_copies(data, folder)
    pd.DataFrame(rows, columns=["name", "tilt_series", "mdoc", "alignment_xf"]).to_csv(
        workdir / "tomograms.tsv", sep="\t", index=False
    )
    write_run_config(workdir, data, config)
    targets = [f"results/tomograms/{name}.mrc" for name, *_ in rows]
    result = snakemake(workdir, *targets, "--keep-going", check=False)
    return workdir, result


def test_the_good_series_is_reconstructed(keep_going_run):
    workdir, result = keep_going_run
    assert result.returncode != 0
    assert (workdir / "results/tomograms/TS_01.mrc").exists()
    for name in ("TS_02", "TS_03", "TS_04", "TS_05"):
        assert not (workdir / f"results/tomograms/{name}.mrc").exists()


@pytest.mark.parametrize(
    "name, rule, message, outputs",
    [
        ("TS_02", "import_tiltseries", r"TS_01\.mrc\.mdoc: describes 21 tilts but the stack \S*TS_02\.mrc has 20 images",
         ["TS_02.mrc", "TS_02.tlt", "TS_02_order.csv"]),
        ("TS_03", "align_tiltseries", r"TS_03\.xf: .*19 .*21", ["TS_03.xf", "TS_03_ali.mrc", "TS_03_alignment.txt"]),
        ("TS_04", "import_tiltseries", r"TS_04\.mrc\.mdoc: no pixel size", ["TS_04.mrc", "TS_04.tlt"]),
        ("TS_05", "import_tiltseries", r"TS_05\.mrc: all 21 views are dark", ["TS_05.mrc", "TS_05.tlt"]),
    ],
)  # fmt: skip
def test_each_bad_series_names_its_file_and_problem(keep_going_run, name, rule, message, outputs):
    workdir, _ = keep_going_run
    log_text = (workdir / f"logs/{rule}/{name}.log").read_text()
    assert re.search(message, log_text), log_text[-2000:]
    assert "Traceback" not in log_text
    for output in outputs:
        assert not (workdir / f"results/tiltseries/{name}/{output}").exists(), output
    leftovers = [p.name for p in (workdir / f"results/tiltseries/{name}").glob("*.tmp*")]
    assert not leftovers, leftovers
