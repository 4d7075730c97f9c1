"""Rule clean_particles (protocol step 6A-B) for one tomogram: CC threshold, duplicates, height.

1. A two-component Gaussian mixture is fitted to the CC of the second per-tomogram project's
   last table; particles below the minimum between the peaks plus ``gmm_offset`` go
   (histogram, fit and threshold in ``cc_threshold.png``). With ``latitude_normalised`` the
   mixture is fitted to the CC with its latitude trend removed (the normalisation of step 8A):
   the missing wedge lowers the CC of every particle away from the VLP's equator, and on the
   raw CC the mixture separates latitudes rather than good and bad particles.
2. Particles that converged onto the same unit are reduced to the best one again.
3. The height shift of rule register_heights moves every particle along its own z axis.
4. Tags are renumbered for the gold standard (step 7): with ``halves_by_vlp`` every VLP goes
   whole into one half (tag parity), so the halves share no membrane or neighbours.
"""

import numpy as np
import pandas as pd

from stasnake.io.atomic import write_text_atomic
from stasnake.io.dynamo_table import read_table, write_table
from stasnake.sta.cleaning import gmm_cc_threshold, latitude_normalised_cc, plot_cc_threshold
from stasnake.sta.height import apply_height_shift
from stasnake.sta.table_ops import exclude_duplicates
from stasnake.sta.tables import tags_with_halves_by_group
from stasnake.workflow import log, run_rule


def main(smk):
    ts = smk.wildcards.ts
    table = read_table(smk.input.table)
    table = table[table["aligned_value"] != 0].reset_index(drop=True)
    apix = float(table["apix"].iloc[0]) if "apix" in table and table["apix"].iloc[0] > 0 else None
    heights = pd.read_csv(smk.input.heights, sep="\t").set_index("tilt_series")
    apix = apix or float(heights.loc[ts, "pixel_size_angstrom"])
    if smk.params.latitude_normalised:
        score, what = latitude_normalised_cc(table, source=smk.input.table), "latitude-normalised CC"
    else:
        score, what = table["cc"].to_numpy(), "CC"
    fit = gmm_cc_threshold(score, offset=smk.params.gmm_offset)
    plot_cc_threshold(score, fit, smk.output.plot, f"{ts}: {what} threshold (protocol step 6A)")
    kept = table[score >= fit.threshold].reset_index(drop=True)
    log.info("%s threshold %.4f (%s): %d of %d particles kept", what, fit.threshold,
             fit.reason or "mixture minimum + offset", len(kept), len(table))  # fmt: skip
    radius = (smk.params.duplicate_distance_angstrom or 0.5 * smk.params.lattice_spacing_angstrom) / apix
    n_before = len(kept)
    kept = exclude_duplicates(kept, radius, source=smk.input.table)
    log.info("%d duplicates within %.1f px removed", n_before - len(kept), radius)
    shift = float(heights.loc[ts, "shift_px"])
    kept = apply_height_shift(kept, shift, source=smk.input.table)
    log.info("height: every particle moved by %.2f px along its z axis", shift)
    if smk.params.halves_by_vlp:
        kept["tag"] = tags_with_halves_by_group(kept, by=("tomo", "reg"))
    else:
        kept["tag"] = np.arange(1, len(kept) + 1)
    kept["tomo"] = smk.params.tomo_number
    write_table(smk.output.table, kept)
    report = pd.DataFrame([{
        "tilt_series": ts, "n_in": len(table), "threshold": fit.threshold, "mixture_minimum": fit.minimum,
        "score": what, "offset": fit.offset, "means": " ".join(f"{m:.4f}" for m in fit.means), "n_after_threshold": n_before,
        "n_kept": len(kept), "height_shift_px": shift, "note": fit.reason,
    }])  # fmt: skip
    write_text_atomic(smk.output.report, report.to_csv(sep="\t", index=False))


run_rule(snakemake, main)  # noqa: F821
