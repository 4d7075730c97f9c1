"""stasnake.io: every file format stasnake reads or writes (all writes are atomic)."""

from stasnake.io.atomic import atomic_output, write_text_atomic
from stasnake.io.cmm import markers_to_pixels, pixels_to_markers, read_cmm, write_cmm
from stasnake.io.dynamo_doc import read_doc, read_vll, write_doc, write_vll
from stasnake.io.dynamo_table import new_table, particle_positions, read_table, write_table
from stasnake.io.em import read_em, read_em_header, write_em
from stasnake.io.imod import (
    read_defocus,
    read_tlt,
    read_xf,
    write_defocus,
    write_tlt,
    write_xf,
    xf_from_rotation,
    xf_tilt_axis_angle_deg,
)
from stasnake.io.mdoc import read_mdoc, write_mdoc
from stasnake.io.mrc import MrcSlabWriter, read_mrc, read_mrc_header, write_mrc
from stasnake.io.star import (
    read_relion_particles,
    read_relion_tomograms,
    read_star,
    require_columns,
    write_star,
)
from stasnake.io.summary import summarize

__all__ = [
    "MrcSlabWriter",
    "atomic_output",
    "markers_to_pixels",
    "new_table",
    "particle_positions",
    "pixels_to_markers",
    "read_cmm",
    "read_defocus",
    "read_doc",
    "read_em",
    "read_em_header",
    "read_mdoc",
    "read_mrc",
    "read_mrc_header",
    "read_relion_particles",
    "read_relion_tomograms",
    "read_star",
    "read_table",
    "read_tlt",
    "read_vll",
    "read_xf",
    "require_columns",
    "summarize",
    "write_cmm",
    "write_defocus",
    "write_doc",
    "write_em",
    "write_mdoc",
    "write_mrc",
    "write_star",
    "write_table",
    "write_text_atomic",
    "write_tlt",
    "write_vll",
    "write_xf",
    "xf_from_rotation",
    "xf_tilt_axis_angle_deg",
]
