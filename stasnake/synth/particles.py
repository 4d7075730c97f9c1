"""Synthetic subtomograms with known poses: rotated, shifted, wedged and noisy copies of a map.

Ground truth for the averaging and alignment tests and benchmarks. A particle
with pose ``R`` (active, reference -> tomogram) and shift ``s`` (pixels, x, y, z)
satisfies ``particle(R p + c + s) = reference(p + c)`` before the wedge and noise
(``c`` the box centre, index ``n // 2``): exactly the convention
:func:`stasnake.sta.rotate.rotate_volume` undoes, so the table of the truth has
``dx, dy, dz = s`` and Euler angles ``matrix_to_dynamo_euler(R)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.fft
from scipy.spatial.transform import Rotation

from stasnake.geometry.euler import matrix_to_dynamo_euler
from stasnake.io.dynamo_table import new_table
from stasnake.sta.rotate import rotate_volume
from stasnake.sta.wedge import wedge_mask


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) rotations drawn uniformly from SO(3)."""
    return Rotation.random(int(n), random_state=rng).as_matrix()


def simulate_particles(
    reference: np.ndarray,
    matrices,
    shifts_xyz,
    rng: np.random.Generator,
    tilt_range_deg=(-60.0, 60.0),
    snr: float = 0.1,
) -> np.ndarray:
    """Wedged, noisy copies of ``reference`` at the given poses.

    Parameters
    ----------
    reference : np.ndarray
        (n, n, n) map (z, y, x), e.g. :func:`stasnake.synth.unit.unit_map`.
    matrices : array_like
        (m, 3, 3) active poses ``R`` (reference -> tomogram).
    shifts_xyz : array_like
        (m, 3) particle centre minus box centre, pixels (x, y, z).
    rng : np.random.Generator
        Source of the noise.
    tilt_range_deg : tuple of float
        (min, max) tilt of the tomogram: the wedge applied, in the box (tomogram) frame,
        to signal and noise alike (a tomogram measures neither in the wedge).
    snr : float
        Variance of the rotated reference over the box divided by the variance of
        the white noise added before the wedge; ``inf`` adds no noise.

    Returns
    -------
    np.ndarray
        (m, n, n, n) float32 particles.
    """
    ref = np.asarray(reference, dtype=np.float32)
    n = ref.shape[0]
    mats = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    shifts = np.asarray(shifts_xyz, dtype=np.float64).reshape(-1, 3)
    wedge = wedge_mask(n, tilt_range_deg)
    signal_var = float(ref.var())
    out = np.empty((len(mats), n, n, n), dtype=np.float32)
    for i, (r, s) in enumerate(zip(mats, shifts, strict=True)):
        # particle(x) = reference(R^T (x - c - s) + c): rotate_volume with M = R^T, shift = -R^T s
        vol = rotate_volume(ref, r.T, -r.T @ s, order=3)
        if np.isfinite(snr):
            vol = vol + rng.normal(0.0, np.sqrt(signal_var / snr), vol.shape).astype(np.float32)
        ft = scipy.fft.rfftn(vol, workers=-1)
        ft *= wedge
        out[i] = scipy.fft.irfftn(ft, s=vol.shape, workers=-1)
    return out


def truth_table(matrices, shifts_xyz, tilt_range_deg=(-60.0, 60.0), tomo: int = 1,
                box_size: int = 32) -> pd.DataFrame:
    """Dynamo table of synthetic particles: tags 1..m, true shifts and Euler angles.

    Positions ``x, y, z`` are spaced ``2 * box_size`` apart along x (a notional
    tomogram), so duplicate and separation checks see distinct particles.
    """
    mats = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    shifts = np.asarray(shifts_xyz, dtype=np.float64).reshape(-1, 3)
    m = len(mats)
    eul = matrix_to_dynamo_euler(mats).reshape(-1, 3)
    table = new_table(m)
    table["tag"] = np.arange(1, m + 1)
    table[["dx", "dy", "dz"]] = shifts
    table[["tdrot", "tilt", "narot"]] = eul
    table["tomo"] = int(tomo)
    table["ymintilt"], table["ymaxtilt"] = tilt_range_deg
    table["x"] = (np.arange(m) + 1) * 2.0 * box_size
    table["y"] = table["z"] = float(box_size)
    return table
