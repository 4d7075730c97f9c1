"""stasnake.geometry: rotation and coordinate conventions (see docs/conventions.md)."""

from stasnake.geometry.coordinates import (
    array_index_to_table,
    box_center,
    from_relion5_centered_angstrom,
    table_to_array_index,
    to_relion5_centered_angstrom,
    tomogram_center,
)
from stasnake.geometry.euler import (
    dynamo_euler_to_matrix,
    matrix_to_dynamo_euler,
    matrix_to_relion_euler,
    relion_euler_to_matrix,
)

__all__ = [
    "array_index_to_table",
    "box_center",
    "dynamo_euler_to_matrix",
    "from_relion5_centered_angstrom",
    "matrix_to_dynamo_euler",
    "matrix_to_relion_euler",
    "relion_euler_to_matrix",
    "table_to_array_index",
    "to_relion5_centered_angstrom",
    "tomogram_center",
]
