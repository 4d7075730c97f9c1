"""Rule register_heights (protocol step 6B): the membrane height of each tomogram's average.

Each average (tomogram contrast: protein and membrane dark) is aligned by a shift along z only,
to the protocol's synthetic flat bilayer placed ``membrane_height_angstrom`` above the box
centre, or, when that is not set, to the mean of the tomograms' averages (the subboxed boxes
need not hold the membrane at all; the shifts then only homogenise the tomograms, with their
median at zero). The shift is applied to a tomogram's particles in rule clean_particles.
"""

import numpy as np
import pandas as pd

from stasnake.io.atomic import write_text_atomic
from stasnake.io.mrc import read_mrc
from stasnake.sta.height import membrane_reference, register_height
from stasnake.workflow import log, run_rule


def main(smk):
    averages, apix = [], None
    for path in smk.input.averages:
        average, apix = read_mrc(path)
        averages.append(average)
    box = averages[0].shape[0]
    limit = min(max(1, int(round(smk.params.max_shift_angstrom / apix))), box // 2 - 1)
    if smk.params.membrane_height_angstrom is not None:
        # the protocol's synthetic bilayer, its mid-plane at the configured height
        reference = membrane_reference(box, apix, z_centre_px=box // 2 + smk.params.membrane_height_angstrom / apix,
                                       polarity=-1.0)  # fmt: skip
        what = f"a synthetic membrane {smk.params.membrane_height_angstrom:g} Å above the box centre"
    else:
        # no height given: the tomograms are registered to their common average
        reference = np.mean(averages, axis=0)
        what = "the mean of the tomograms' averages"
    rows = []
    for name, average in zip(smk.params.names, averages, strict=True):
        dz = register_height(average, reference, max_shift_px=limit)
        if abs(dz) >= limit:
            log.warning("%s: the height shift reached the %d-px limit", name, limit)
        rows.append({"tilt_series": name, "shift_px": dz, "pixel_size_angstrom": apix})
        log.info("%s: %.2f px along the particles' z to match %s", name, dz, what)
    heights = pd.DataFrame(rows)
    if smk.params.membrane_height_angstrom is None:  # keep the common height where it was
        heights["shift_px"] -= float(np.median(heights["shift_px"]))
    write_text_atomic(smk.output.heights, heights.to_csv(sep="\t", index=False))


run_rule(snakemake, main)  # noqa: F821
