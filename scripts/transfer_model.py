"""Rule transfer_model: what each tilt did to the signal (defocus, exposure, flip, weighting), for CTF-weighted averaging."""

import pandas as pd

from stasnake.errors import InputError
from stasnake.io.imod import read_defocus, read_tlt
from stasnake.io.mrc import read_mrc_header
from stasnake.sta.transfer import transfer_from_tilts, write_transfer
from stasnake.tilt.ctf_correct import defocus_from_imod
from stasnake.tilt.importing import read_acquisition
from stasnake.workflow import log, run_rule


def main(smk):
    angles = read_tlt(smk.input.tlt)
    order = pd.read_csv(smk.input.order)
    defocus = defocus_from_imod(read_defocus(smk.input.defocus))
    for path, rows in ((smk.input.order, len(order)), (smk.input.defocus, len(defocus))):
        if rows != len(angles):
            raise InputError(path, f"has {rows} views, {smk.input.tlt} has {len(angles)}")
    acquisition = read_acquisition(smk.input.acquisition)
    header = read_mrc_header(smk.input.tomogram)
    reduction = smk.params.dose_weighting_reduction if smk.params.dose_weighting else None
    model = transfer_from_tilts(
        angles, 0.5 * (defocus["defocus_u_angstrom"] + defocus["defocus_v_angstrom"]).to_numpy(),
        order["pre_exposure_e_per_A2"].to_numpy(), order["dose_e_per_A2"].to_numpy(),
        phase_flipped=smk.params.phase_flipped, dose_weighting_reduction=reduction,
        voltage_kv=acquisition["voltage_kv"], cs_mm=acquisition["cs_mm"],
        amplitude_contrast=acquisition["amplitude_contrast"], pixel_size_angstrom=header["pixel_size_angstrom"],
        tomogram_shape_zyx=header["shape"],
    )  # fmt: skip
    log.info("%d tilts, defocus %.0f-%.0f Å, %s, %s", len(angles), model.defocus_angstrom.min(),
             model.defocus_angstrom.max(), "phase-flipped" if model.phase_flipped else "not phase-flipped",
             f"dose-weighted (reduction {reduction})" if reduction is not None else "not dose-weighted")  # fmt: skip
    write_transfer(smk.output.transfer, model)


run_rule(snakemake, main)  # noqa: F821
