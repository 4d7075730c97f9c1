"""Poses from tables: rotation matrices, shifts and symmetry codes."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from stasnake.geometry.euler import dynamo_euler_to_matrix


def table_poses(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Active rotation matrices and shifts of the particles of a table.

    Returns
    -------
    matrices : np.ndarray
        (n, 3, 3) reference -> tomogram rotations (see ``stasnake.geometry.euler``).
    shifts_xyz : np.ndarray
        (n, 3) particle centre minus box centre in pixels, (x, y, z): the
        table's dx, dy, dz after cropping.
    """
    eulers = table[["tdrot", "tilt", "narot"]].to_numpy(dtype=np.float64)
    matrices = dynamo_euler_to_matrix(eulers).reshape(-1, 3, 3)
    return matrices, table[["dx", "dy", "dz"]].to_numpy(dtype=np.float64)


def symmetry_order(code: str) -> int:
    """Order n of a cyclic symmetry code ``"c1"``, ``"C6"``... (about the z axis)."""
    m = re.fullmatch(r"[cC]([1-9][0-9]*)", str(code).strip())
    if not m:
        raise ValueError(f"symmetry {code!r} is not a cyclic symmetry such as c1 or c6")
    return int(m.group(1))
