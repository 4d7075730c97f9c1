"""Rule correct_ctf: strip-based phase flipping along the defocus gradient of each tilt."""

from stasnake.errors import InputError
from stasnake.io.imod import read_defocus, read_tlt
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.tilt.ctf_correct import defocus_from_imod, phase_flip_stack_strips
from stasnake.tilt.importing import read_acquisition
from stasnake.workflow import log, run_rule, threads


def main(smk):
    acquisition = read_acquisition(smk.input.acquisition)
    angles = read_tlt(smk.input.tlt)
    defocus = defocus_from_imod(read_defocus(smk.input.defocus))
    stack, apix = read_mrc(smk.input.aligned)
    if len(defocus) != stack.shape[0]:
        raise InputError(smk.input.defocus, f"has {len(defocus)} views, the aligned stack has {stack.shape[0]}")
    log.info("phase flipping %d tilts in strips (defocus tolerance %.0f Å)", len(angles), smk.params.tolerance_angstrom)
    flipped = phase_flip_stack_strips(
        stack, apix, defocus, angles, acquisition["voltage_kv"], acquisition["cs_mm"],
        acquisition["amplitude_contrast"], defocus_tolerance_angstrom=smk.params.tolerance_angstrom,
        workers=threads(),
    )  # fmt: skip
    write_mrc(smk.output.flipped, flipped, apix, stack=True)


run_rule(snakemake, main)  # noqa: F821
