"""Rules propose_reference_center and propose_particle_centers: the autopilot's markers.

Step 3B: the centre of the unit nearest the box centre of the initial average; step 5B: every
unit centre in the average of averages. Written as ChimeraX markers to results/proposals/
(used only where the user's file in annotations/ does not exist).
"""

from stasnake.io.cmm import pixels_to_markers, write_cmm
from stasnake.io.mrc import read_mrc
from stasnake.picking.propose_markers import propose_reference_center, propose_unit_centres
from stasnake.workflow import log, run_rule


def main(smk):
    average, apix = read_mrc(smk.input.average)
    spacing = smk.params.lattice_spacing_angstrom
    if smk.params.kind == "reference_center":
        xyz = propose_reference_center(average, apix, lattice_spacing_angstrom=spacing)
        name = "proposed reference center"
    else:
        xyz = propose_unit_centres(average, apix, lattice_spacing_angstrom=spacing)
        name = "proposed particle centers"
    for i, p in enumerate(xyz, start=1):
        log.info("marker %d at (%.1f, %.1f, %.1f) px of %s", i, *p, smk.input.average)
    write_cmm(smk.output.markers, pixels_to_markers(xyz, apix, radius_angstrom=1.5 * apix), set_name=name)


run_rule(snakemake, main)  # noqa: F821
