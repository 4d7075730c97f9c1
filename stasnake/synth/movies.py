"""Synthetic dose-fractionated movies with a known whole-frame drift.

Frame i is the clean image moved by ``s_i`` (Fourier shift, periodic):
``frame_i(x) = clean(x - s_i)`` scaled to the dose per frame, divided by the
gain reference when one is given (the camera's raw counts, so that
:func:`stasnake.tilt.motion.apply_gain` restores them), then Poisson noise.
The shift convention is that of :mod:`stasnake.tilt.motion`.
"""

from __future__ import annotations

import numpy as np
import scipy.fft


def drift_trajectory(n_frames: int, drift_px_total: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth random drift path, (n, 2) (dx, dy) px, mean zero, total path length ``drift_px_total``.

    A random initial direction that turns smoothly (quadratic heading change)
    with a speed that decays over the exposure (beam-induced motion is fastest
    in the first frames).
    """
    t = np.linspace(0.0, 1.0, n_frames)
    heading = rng.uniform(0, 2 * np.pi) + rng.normal(0.0, 0.8) * t + rng.normal(0.0, 0.8) * t**2
    speed = np.exp(-rng.uniform(0.5, 2.0) * t)
    steps = np.column_stack([np.cos(heading), np.sin(heading)]) * speed[:, None]
    steps[0] = 0.0
    path = np.cumsum(steps, axis=0)
    length = np.sum(np.hypot(*np.diff(path, axis=0).T))
    path *= drift_px_total / max(length, 1e-12)
    return path - path.mean(axis=0)


def shift_image(image: np.ndarray, shift_xy) -> np.ndarray:
    """Move the content of a 2-D image by (dx, dy) pixels (Fourier phase ramp, periodic), float64."""
    ny, nx = image.shape
    ky, kx = scipy.fft.fftfreq(ny)[:, None], scipy.fft.rfftfreq(nx)[None, :]
    spec = scipy.fft.rfft2(image, workers=-1) * np.exp(-2j * np.pi * (kx * shift_xy[0] + ky * shift_xy[1]))
    return scipy.fft.irfft2(spec, s=(ny, nx), workers=-1)


def simulate_movie(
    image_clean: np.ndarray,
    n_frames: int,
    dose_per_frame_e_per_A2: float,
    pixel_size_angstrom: float,
    drift_px_total: float,
    rng: np.random.Generator,
    gain: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Simulate a movie of a clean image drifting under the beam.

    Parameters
    ----------
    image_clean : np.ndarray
        (ny, nx) noise-free image, non-negative, in units of the mean
        intensity (it is scaled so that its mean is the dose per frame in
        electrons per pixel).
    n_frames : int
        Number of frames.
    dose_per_frame_e_per_A2 : float
        Dose per frame, e/Å².
    pixel_size_angstrom : float
        Pixel size, Å.
    drift_px_total : float
        Length of the drift path over the movie, pixels.
    rng : np.random.Generator
        Random source (trajectory and shot noise).
    gain : np.ndarray or None
        (ny, nx) multiplicative gain reference (in the orientation of the
        frames); the expected counts are divided by it.

    Returns
    -------
    frames : np.ndarray
        (n, ny, nx) float32 Poisson counts.
    true_shifts : np.ndarray
        (n, 2) (dx, dy) pixels of each frame's content, mean zero.
    """
    clean = np.asarray(image_clean, dtype=np.float64)
    if clean.ndim != 2:
        raise ValueError(f"image_clean must be 2-D, got shape {clean.shape}")
    counts = dose_per_frame_e_per_A2 * pixel_size_angstrom**2
    clean = clean * (counts / max(float(clean.mean()), 1e-30))
    shifts = drift_trajectory(n_frames, drift_px_total, rng)
    frames = np.empty((n_frames, *clean.shape), dtype=np.float32)
    for i, s in enumerate(shifts):
        expected = np.clip(shift_image(clean, s), 0.0, None)
        if gain is not None:
            expected = expected / gain
        frames[i] = rng.poisson(expected)
    return frames, shifts
