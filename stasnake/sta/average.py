"""Average subtomograms with known poses.

Each particle is brought into the reference frame with
:func:`stasnake.sta.rotate.rotate_volume` (``aligned(p_ref) =
particle(R @ p_ref + c + shift)``), the aligned particles are summed and the
sum divided by their number. No missing-wedge compensation is applied yet
(the average carries the wedge-weighted sum of the particles' transfer; a later
issue adds Fourier-space wedge normalisation).
"""

from __future__ import annotations

import logging

import numpy as np

from stasnake.sta.rotate import rotate_volume, rotation_about_z

log = logging.getLogger(__name__)


def symmetrize_cn(volume: np.ndarray, n: int) -> np.ndarray:
    """Cn-symmetrise a (z, y, x) volume about its z axis through the box centre.

    Averages the volume rotated by ``k * 360 / n`` degrees, k = 0..n-1
    (trilinear interpolation).

    Parameters
    ----------
    volume : np.ndarray
        (z, y, x) volume.
    n : int
        Symmetry order (1 returns a float32 copy).

    Returns
    -------
    np.ndarray
        float32 symmetrised volume.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"symmetry order must be >= 1, not {n}")
    vol = np.asarray(volume, dtype=np.float32)
    acc = vol.astype(np.float64)
    for k in range(1, n):
        acc += rotate_volume(vol, rotation_about_z(360.0 * k / n))
    return (acc / n).astype(np.float32)


def average_particles(particles, matrices, shifts_xyz, symmetry: int = 1,
                      log_every: int = 100) -> np.ndarray:
    """Average particles in the reference frame using their known poses.

    No missing-wedge compensation yet: the result is the plain mean of the
    aligned particles.

    Parameters
    ----------
    particles : array_like
        (n, b, b, b) boxes (z, y, x), e.g. from
        :func:`stasnake.sta.crop.crop_particles`; a sequence of arrays works
        too (read one at a time).
    matrices : array_like
        (n, 3, 3) active rotations R (reference -> tomogram) on (x, y, z).
    shifts_xyz : array_like
        (n, 3) offsets (x, y, z) in pixels of each particle centre from its box
        centre: the table shifts (dx, dy, dz) plus the crop remainder when the
        box was cut at the rounded ``x`` rather than ``x + dx``.
    symmetry : int
        Cn symmetry about the reference z axis (1 = none); applied to the mean
        by averaging its rotations by ``k * 360 / n`` degrees.
    log_every : int
        Log progress (``logging`` INFO) every this many particles.

    Returns
    -------
    np.ndarray
        (b, b, b) float32 average.
    """
    mats = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    shifts = np.asarray(shifts_xyz, dtype=np.float64).reshape(-1, 3)
    n = len(particles)
    if n == 0:
        raise ValueError("no particles to average")
    if mats.shape[0] != n or shifts.shape[0] != n:
        raise ValueError(f"{n} particles but {mats.shape[0]} matrices and {shifts.shape[0]} shifts")
    acc = None
    for i in range(n):
        aligned = rotate_volume(particles[i], mats[i], shifts[i])
        if acc is None:
            acc = aligned.astype(np.float64)
        else:
            acc += aligned
        if log_every and (i + 1) % log_every == 0:
            log.info("averaged %d / %d particles", i + 1, n)
    avg = (acc / n).astype(np.float32)
    if symmetry != 1:
        avg = symmetrize_cn(avg, symmetry)
    return avg
