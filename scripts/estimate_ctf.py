"""Rule estimate_ctf: per-tilt defocus (estimated, or imported from the sample list's IMOD file)."""

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.io.atomic import write_text_atomic
from stasnake.io.ctffind import ctf_table_to_imod_defocus, write_ctffind_txt
from stasnake.io.imod import read_defocus, read_tlt, write_defocus
from stasnake.io.mrc import read_mrc
from stasnake.tilt.ctf_correct import defocus_from_imod
from stasnake.tilt.ctf_estimate import estimate_tilt_series_ctf, flag_outliers
from stasnake.tilt.ctf_plot import plot_ctf_series
from stasnake.tilt.importing import read_acquisition
from stasnake.workflow import log, run_rule


def imported_ctf(path, order, angles, n_views, outlier_fraction):
    """The sample list's .defocus (full sorted stack) reduced to the imported views."""
    per_view = defocus_from_imod(read_defocus(path))
    if len(per_view) != n_views:
        raise InputError(path, f"covers {len(per_view)} views, the tilt series has {n_views}")
    table = per_view.iloc[order.full_sorted_index.to_numpy()].reset_index(drop=True)
    table.insert(1, "tilt_angle_deg", angles)
    table["score"], table["fit_resolution_angstrom"] = np.nan, np.nan
    mean_defocus = 0.5 * (table.defocus_u_angstrom + table.defocus_v_angstrom)
    table["outlier"] = flag_outliers(mean_defocus.to_numpy(), outlier_fraction)
    return table


def main(smk):
    acq = read_acquisition(smk.input.acquisition)
    order = pd.read_csv(smk.input.order)
    angles = read_tlt(smk.input.tlt)
    p = smk.params.ctf
    if smk.input.defocus:
        table = imported_ctf(smk.input.defocus, order, angles, acq["n_views_raw"], p["outlier_fraction"])
        log.info("imported defocus from %s", smk.input.defocus)
    else:
        stack, apix = read_mrc(smk.input.stack, mmap=True)
        low, high = p["resolution_range_angstrom"]
        high = high if high is not None else 2.5 * apix
        table = estimate_tilt_series_ctf(
            stack, apix, angles, acq["voltage_kv"], acq["cs_mm"], acq["amplitude_contrast"],
            tilt_axis_angle_deg=acq["tilt_axis_angle_deg"], defocus_range_angstrom=tuple(p["defocus_range_angstrom"]),
            resolution_range_angstrom=(low, high), outlier_fraction=p["outlier_fraction"],
            defocus_prior_fraction=p["defocus_prior_fraction"],
        )  # fmt: skip
    for row in table[table.outlier].itertuples():
        own = getattr(row, "defocus_independent_angstrom", np.nan)
        log.warning("tilt %+.1f deg: defocus %.0f Å (own fit %.0f Å) deviates > %.0f %% from the series median"
                    " (outlier)", row.tilt_angle_deg, row.defocus_u_angstrom, own,
                    100 * p["outlier_fraction"])  # fmt: skip
    log.info("defocus U median %.0f Å (%.0f..%.0f), %d outlier(s)", table.defocus_u_angstrom.median(),
             table.defocus_u_angstrom.min(), table.defocus_u_angstrom.max(), int(table.outlier.sum()))  # fmt: skip
    write_ctffind_txt(smk.output.ctffind, table.fillna({"score": 0.0, "fit_resolution_angstrom": 0.0}),
                      acq["pixel_size_angstrom"], acq["voltage_kv"], acq["cs_mm"], acq["amplitude_contrast"],
                      input_name=str(smk.input.stack))  # fmt: skip
    write_defocus(smk.output.defocus, ctf_table_to_imod_defocus(table))
    write_text_atomic(smk.output.table, table.to_csv(index=False))
    plot_ctf_series(table, smk.output.plot, p["outlier_fraction"])


run_rule(snakemake, main)  # noqa: F821
