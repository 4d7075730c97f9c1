"""Rule dose_weight: Grant & Grigorieff exposure filter on each aligned tilt image."""

import pandas as pd

from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.tilt.dose_weight import dose_weight_stack
from stasnake.workflow import log, run_rule, threads


def main(smk):
    order = pd.read_csv(smk.input.order)
    stack, apix = read_mrc(smk.input.aligned)
    weighted = dose_weight_stack(
        stack, apix, order.pre_exposure_e_per_A2.to_numpy(), order.dose_e_per_A2.to_numpy(),
        voltage_kv=smk.params.voltage_kv, reduction=smk.params.reduction, workers=threads(),
    )  # fmt: skip
    log.info("dose-weighted %d tilts, accumulated exposure up to %.1f e/Å² (reduced by %.0f %%)",
             len(order), (order.pre_exposure_e_per_A2 + order.dose_e_per_A2).max(), 100 * smk.params.reduction)  # fmt: skip
    write_mrc(smk.output.weighted, weighted, apix, stack=True)


run_rule(snakemake, main)  # noqa: F821
