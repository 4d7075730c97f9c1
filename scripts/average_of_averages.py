"""Rule average_of_averages (protocol step 5A): the per-tomogram averages aligned to each other.

The averages are treated as particles (tag and ``tomo`` = the tomogram number) with no
missing wedge; the merged map is C6-symmetrised. The table says how each average sits
relative to the merged map (rule subbox_lattice maps the marked unit centres through it).
"""

import numpy as np

from stasnake.errors import InputError
from stasnake.io.dynamo_table import write_table
from stasnake.io.mrc import read_mrc, write_mrc
from stasnake.protocol import search_params_of
from stasnake.sta.map_alignment import average_of_averages
from stasnake.workflow import log, run_rule


def main(smk):
    maps, sizes = [], set()
    for path in smk.input.averages:
        volume, apix = read_mrc(path)
        maps.append(volume)
        sizes.add((volume.shape, round(apix, 3)))
    if len(sizes) != 1:
        raise InputError("results/averages", f"the per-tomogram averages differ in box or pixel size: {sizes}")
    table, merged = average_of_averages(maps, apix, search_params_of(smk.params.search), symmetry_order=6)
    table["tag"] = smk.params.tomo_numbers
    table["tomo"] = smk.params.tomo_numbers
    table["apix"] = apix
    for path, row in zip(smk.input.averages, table.itertuples(), strict=True):
        log.info("%s: tdrot %.1f tilt %.1f narot %.1f, shift (%.2f, %.2f, %.2f) px, CC %.3f", path, row.tdrot,
                 row.tilt, row.narot, row.dx, row.dy, row.dz, row.cc)  # fmt: skip
    write_table(smk.output.table, table)
    write_mrc(smk.output.average, np.asarray(merged, dtype=np.float32), apix)


run_rule(snakemake, main)  # noqa: F821
