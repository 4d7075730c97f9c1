"""Rule centre_initial_reference: re-centre the reference project's particles on the marked point, re-average."""

import pandas as pd

from stasnake.errors import InputError
from stasnake.io.cmm import markers_to_pixels, read_cmm
from stasnake.io.dynamo_table import read_table, write_table
from stasnake.io.mrc import read_mrc_header, write_mrc
from stasnake.sta.average import average_particles, tilt_ranges_from_table
from stasnake.sta.poses import table_poses
from stasnake.sta.project import ParticleStacks
from stasnake.sta.table_ops import recentre
from stasnake.workflow import log, run_rule


def main(smk):
    header = read_mrc_header(smk.input.average)
    box, apix = header["shape"][-1], header["pixel_size_angstrom"]
    markers = markers_to_pixels(read_cmm(smk.input.marker), apix)
    if len(markers) != 1:
        raise InputError(smk.input.marker, f"holds {len(markers)} markers; mark exactly one: the particle centre")
    if not ((markers[0] >= 1) & (markers[0] <= box)).all():
        raise InputError(smk.input.marker, f"marker at {markers[0].round(1).tolist()} px lies outside the "
                         f"{box}-px map {smk.input.average}")  # fmt: skip
    table = read_table(smk.input.table)
    centred = recentre(table, markers[0], box, source=smk.input.table)
    rows = table["averaged_value"].to_numpy() != 0
    index = pd.read_csv(smk.input.index)
    matrices, shifts = table_poses(centred[rows])
    average = average_particles(ParticleStacks(index, index["row"].to_numpy()[rows]), matrices, shifts,
                                tilt_ranges_from_table(centred[rows]), device=smk.params.device)  # fmt: skip
    log.info("re-centred %d particles on the marker at (%.1f, %.1f, %.1f) px of the %d-px average "
             "(offset %.1f, %.1f, %.1f px) and re-averaged %d", len(table), *markers[0], box,
             *(markers[0] - (box // 2 + 1)), int(rows.sum()))  # fmt: skip
    write_table(smk.output.table, centred)
    write_mrc(smk.output.average, average, apix)


run_rule(snakemake, main)  # noqa: F821
