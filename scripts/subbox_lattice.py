"""Rule subbox_lattice (protocol step 5C-D): the unit centres marked in the average of averages,
mapped onto one tomogram's average (first subboxing) and from it onto the tomogram (second).

Duplicates (the oversampled crop points see the same unit several times) are reduced to the
best-scoring copy within ``duplicate_distance_angstrom`` (half the lattice spacing by default,
as ``dpktbl.exclusionPerVolume``).
"""

import numpy as np

from stasnake.errors import InputError
from stasnake.io.cmm import markers_to_pixels, read_cmm
from stasnake.io.dynamo_table import particle_positions, read_table, write_table
from stasnake.io.mrc import read_mrc_header
from stasnake.sta.poses import table_poses
from stasnake.sta.table_ops import average_centre_1based, exclude_duplicates, subbox
from stasnake.workflow import log, run_rule


def main(smk):
    header = read_mrc_header(smk.input.merged)
    box, apix = int(header["shape"][-1]), float(header["pixel_size_angstrom"])
    markers = markers_to_pixels(read_cmm(smk.input.markers), apix)
    if len(markers) == 0:
        raise InputError(smk.input.markers, "holds no markers: mark every lattice unit centre")
    outside = ~np.all((markers >= 0.5) & (markers <= box + 0.5), axis=1)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise InputError(smk.input.markers, f"marker {k + 1} at {markers[k].round(1).tolist()} px lies outside "
                         f"the {box}-px map {smk.input.merged}")  # fmt: skip
    merged_table = read_table(smk.input.merged_table)
    row = merged_table[merged_table["tomo"] == smk.params.tomo_number].copy()
    if len(row) != 1:
        raise InputError(smk.input.merged_table, f"has {len(row)} rows for tomogram {smk.params.tomo_number}")
    # first subboxing: the markers in this tomogram's average (positions and the merged frame's axes)
    row[["x", "y", "z"]] = average_centre_1based(box)
    local = subbox(row, markers, box, source=smk.input.merged_table)
    local_xyz = particle_positions(local)
    inside = np.all((local_xyz >= 0.5) & (local_xyz <= box + 0.5), axis=1)
    if not inside.all():
        log.info("%d of %d markers fall outside this tomogram's average and are not used",
                 int((~inside).sum()), len(markers))  # fmt: skip
    if not inside.any():
        raise InputError(smk.input.markers, f"no marker falls inside the average of tomogram {smk.params.tomo_number}")
    local_r, _ = table_poses(local[inside])
    # second subboxing: every marker into every particle of the tomogram
    table = read_table(smk.input.table)
    table = table[table["aligned_value"] != 0].reset_index(drop=True)
    candidates = subbox(table, local_xyz[inside], box, orientations=local_r, marker_column="sref",
                        source=smk.input.table)  # fmt: skip
    spacing_px = smk.params.lattice_spacing_angstrom / apix
    radius = (smk.params.duplicate_distance_angstrom or 0.5 * smk.params.lattice_spacing_angstrom) / apix
    kept = exclude_duplicates(candidates, radius, source="subboxed candidates")
    kept["tag"] = np.arange(1, len(kept) + 1)
    kept["tomo"] = smk.params.tomo_number
    write_table(smk.output.table, kept)
    log.info("%d particles x %d markers = %d candidates; %d kept after excluding duplicates within %.1f px "
             "(lattice spacing %.1f px)", len(table), int(inside.sum()), len(candidates), len(kept), radius,
             spacing_px)  # fmt: skip


run_rule(snakemake, main)  # noqa: F821
