"""Rule sta_gather_table: gather an iteration's aligned chunks; CC threshold and separation in tomogram."""

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.io.dynamo_table import read_table, write_table
from stasnake.sta.cc_plot import plot_cc_selection
from stasnake.sta.project import select_for_average
from stasnake.sta.table_ops import exclude_duplicates
from stasnake.sta.tables import half_set
from stasnake.workflow import log, run_rule


def main(smk):
    project = smk.params.project
    k = int(smk.wildcards.k)
    rnd = project.round_of(k)
    previous = read_table(smk.input.previous)
    chunks = pd.concat([read_table(p) for p in smk.input.chunks], ignore_index=True).set_index("tag")
    if len(chunks) != len(previous) or not chunks.index.is_unique:
        raise InputError(smk.input.chunks[0], f"chunks hold {len(chunks)} rows for a table of {len(previous)}")
    table = chunks.loc[previous["tag"]].reset_index()[previous.columns]
    eligible = previous["aligned_value"].to_numpy() != 0
    cc = table["cc"].to_numpy()
    selected = np.zeros(len(table), bool)
    halves = half_set(table["tag"]) if project.gold_standard else np.ones(len(table), int)
    for h in np.unique(halves):  # thresholds act on each gold-standard half independently
        part = halves == h
        selected[part] = select_for_average(cc[part], rnd.threshold_modus, rnd.threshold, eligible[part])
    n_threshold = int(eligible.sum() - selected.sum())
    n_close = 0
    if rnd.separation_in_tomogram > 0 and selected.any():
        kept = exclude_duplicates(table[selected], rnd.separation_in_tomogram)
        losers = np.setdiff1d(table.loc[selected, "tag"], kept["tag"])
        n_close = losers.size
        selected &= ~table["tag"].isin(losers).to_numpy()
        table.loc[table["tag"].isin(losers), "aligned_value"] = 0
    table["averaged_value"] = selected.astype(int)
    if rnd.threshold_modus > 5:  # modes 11..51: the rest also leave the next alignments
        table["aligned_value"] = selected.astype(int)
    log.info("iteration %d: %d of %d particles averaged (%d below the CC threshold, %d closer than %g px to a "
             "better one); CC median %.4f", k, int(selected.sum()), len(table), n_threshold, n_close,
             rnd.separation_in_tomogram, float(np.median(cc[eligible])) if eligible.any() else float("nan"))  # fmt: skip
    write_table(smk.output.table, table)
    plot_cc_selection(cc, selected, eligible, smk.output.plot, f"{project.name} iteration {k}")


run_rule(snakemake, main)  # noqa: F821
