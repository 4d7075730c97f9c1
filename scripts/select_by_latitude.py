"""Rule select_by_latitude (protocol step 8A): the latitude-normalised CC filter.

For each gold-standard half and each tomogram separately (the defocus of a tomogram shifts
all its CCs), the CC trend with latitude on the VLP (a missing-wedge effect) is fitted with
the first two terms of a Fourier series and removed; particles more than ``n_sd`` standard
deviations below the mean of the normalised CC go. The kept particles of each tomogram are
written as its crop table (tags and halves unchanged) for the refined projects (step 8B).
"""

import pandas as pd

from stasnake.errors import InputError
from stasnake.io.atomic import write_text_atomic
from stasnake.io.dynamo_table import read_table, write_table
from stasnake.sta.cleaning import latitude_cc_filter, plot_latitude_cc
from stasnake.sta.tables import half_set
from stasnake.workflow import log, run_rule


def main(smk):
    table = read_table(smk.input.table)
    table = table[table["aligned_value"] != 0].reset_index(drop=True)
    index = pd.read_csv(smk.input.index)
    ts_of_tag = dict(zip(index["tag"], index["ts"], strict=True))
    missing = sorted(set(table["tag"]) - set(ts_of_tag))
    if missing:
        raise InputError(smk.input.table, f"tags {missing[:5]} are not in the project index {smk.input.index}")
    table["_ts"] = table["tag"].map(ts_of_tag)
    table["_half"] = half_set(table["tag"].to_numpy())
    kept, reports = [], []
    for half in (1, 2):
        part = table[table["_half"] == half].reset_index(drop=True)
        selected, report = latitude_cc_filter(part, n_sd=smk.params.n_sd, by=("tomo",), source=smk.input.table)
        kept.append(selected)
        reports.append(report.assign(half=half))
        for _, group in part.groupby("tomo"):
            ts = group["_ts"].iloc[0]
            path = [p for p in smk.output.plots if f"/{ts}/" in p and p.endswith(f"half{half}.png")][0]
            plot_latitude_cc(group, path, f"{ts}, half {half}: CC vs latitude (protocol step 8A)", n_sd=smk.params.n_sd)
    kept = pd.concat(kept, ignore_index=True)
    report = pd.concat(reports, ignore_index=True)
    write_text_atomic(smk.output.report, report.to_csv(sep="\t", index=False))
    for ts, path in zip(smk.params.names, smk.output.tables, strict=True):
        rows = kept[kept["_ts"] == ts].drop(columns=["_ts", "_half"]).sort_values("tag").reset_index(drop=True)
        if len(rows) == 0:
            raise InputError(smk.input.table, f"no particle of {ts} survives the latitude CC filter")
        write_table(path, rows)
        log.info("%s: %d of %d particles kept", ts, len(rows), int((table["_ts"] == ts).sum()))


run_rule(snakemake, main)  # noqa: F821
