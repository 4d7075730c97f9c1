"""Whole-frame motion correction of movies: gain, drift by cross-correlation, sums.

Conventions
-----------
Frames are ``(n, ny, nx)`` arrays (frame, row = y, column = x). A shift is
``(dx, dy)`` in pixels and means the content of frame i is displaced by
``s_i`` relative to the reference: ``frame_i(x) = ref(x - s_i)``. Correcting
a frame shifts it by ``-s_i`` (Fourier-space phase ramp, so subpixel shifts
are exact for band-limited images and wrap around the edges). Shifts are
reported relative to the frame sum: their mean over frames is zero, so the
corrected sum sits where the uncorrected one does on average.

Gain reference
--------------
The gain is multiplicative, as in MotionCor2 and RELION: ``corrected = frame
* gain``. Before use it is rotated by ``rotate_quarter_turns`` x 90°, then
flipped (RELION's motioncorr job: "Flip the gain reference after rotation.
This is the same as -FlipGain in MotionCor2"; rotation "by this number times
90 degrees clockwise in relion_display. This is the same as -RotGain in
MotionCor2", which calls the same turn counter-clockwise because it puts y
up). Here one quarter turn is clockwise with row 0 displayed at the top,
i.e. ``np.rot90(gain, -k)``; ``flip="y"`` flips upside down (rows,
MotionCor2 ``-FlipGain 1``), ``flip="x"`` left to right (columns, ``-FlipGain
2``). The turn direction follows the RELION help text and is not checked
against MotionCor2 output on real data.
"""

from __future__ import annotations

from os import PathLike

import numpy as np
import scipy.fft
from scipy import ndimage

from stasnake.errors import InputError

_WORKERS = -1


def transform_gain(gain: np.ndarray, flip: str | None = None, rotate_quarter_turns: int = 0) -> np.ndarray:
    """Rotate then flip a gain reference (MotionCor2 -RotGain then -FlipGain).

    Parameters
    ----------
    gain : np.ndarray
        (ny, nx) gain reference as stored in its file.
    flip : {None, "x", "y"}
        Flip after the rotation: "y" upside down (reverse rows), "x" left to
        right (reverse columns).
    rotate_quarter_turns : int
        Number of 90° clockwise turns (row 0 displayed at the top), any integer.

    Returns
    -------
    np.ndarray
        The transformed gain (a view where possible).
    """
    if flip not in (None, "x", "y"):
        raise ValueError(f"gain flip must be None, 'x' or 'y', not {flip!r}")
    g = np.rot90(np.asarray(gain), -int(rotate_quarter_turns))
    if flip == "y":
        g = g[::-1, :]
    elif flip == "x":
        g = g[:, ::-1]
    return g


def apply_gain(
    frames: np.ndarray,
    gain: np.ndarray | None,
    flip: str | None = None,
    rotate_quarter_turns: int = 0,
    source: str | PathLike = "gain reference",
) -> np.ndarray:
    """Multiply every frame by the (rotated, then flipped) gain reference.

    Parameters
    ----------
    frames : np.ndarray
        (n, ny, nx) raw frames (counts).
    gain : np.ndarray or None
        (gy, gx) multiplicative gain reference; None returns the frames as float32.
    flip, rotate_quarter_turns
        See :func:`transform_gain`.
    source : str or PathLike
        The gain file, named in errors.

    Returns
    -------
    np.ndarray
        (n, ny, nx) float32 gain-corrected frames.

    Raises
    ------
    InputError
        When the transformed gain does not have the frame shape, or holds
        non-finite values.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"frames must be (n, ny, nx), got shape {frames.shape}")
    if gain is None:
        return frames.astype(np.float32, copy=False)
    g = transform_gain(gain, flip, rotate_quarter_turns)
    if g.shape != frames.shape[1:]:
        raise InputError(
            source,
            f"gain reference is {g.shape[1]} x {g.shape[0]} px (x by y) after rotating {rotate_quarter_turns} "
            f"quarter turn(s) and flip {flip!r}, but the frames are {frames.shape[2]} x {frames.shape[1]} px; "
            "check the gain file and the rotate/flip options",
        )
    if not np.all(np.isfinite(g)):
        raise InputError(source, "gain reference holds non-finite values")
    return (frames * g[None].astype(np.float32)).astype(np.float32, copy=False)


def _frequencies(ny: int, nx: int) -> tuple[np.ndarray, np.ndarray]:
    """rfft2 frequency grids in cycles/pixel: ky (ny, 1), kx (1, nx//2+1)."""
    return scipy.fft.fftfreq(ny)[:, None], scipy.fft.rfftfreq(nx)[None, :]


def _phase(ky: np.ndarray, kx: np.ndarray, shift_xy) -> np.ndarray:
    """Phase ramp that moves content by ``shift_xy`` = (dx, dy) pixels (separable: two 1-D ramps)."""
    return np.exp(-2j * np.pi * kx * shift_xy[0]) * np.exp(-2j * np.pi * ky * shift_xy[1])


def _parabolic_offset(cm: float, c0: float, cp: float) -> float:
    """Vertex of a parabola through (-1, cm), (0, c0), (1, cp), clipped to ±0.5."""
    den = cm - 2.0 * c0 + cp
    if den >= 0:
        return 0.0
    return float(np.clip(0.5 * (cm - cp) / den, -0.5, 0.5))


def _peak(cc: np.ndarray, max_shift_px: float) -> np.ndarray:
    """Subpixel (dx, dy) of the highest cross-correlation peak within ``max_shift_px`` of the origin.

    ``cc`` is an unshifted (origin at [0, 0]) real correlation map.
    """
    ny, nx = cc.shape
    r = int(np.ceil(max_shift_px))
    ry, rx = min(r, ny // 2 - 1), min(r, nx // 2 - 1)
    win = np.roll(cc, (ry, rx), axis=(0, 1))[: 2 * ry + 1, : 2 * rx + 1]
    iy, ix = np.unravel_index(int(np.argmax(win)), win.shape)
    dy, dx = iy - ry, ix - rx
    y0, x0 = dy % ny, dx % nx
    fy = _parabolic_offset(cc[(y0 - 1) % ny, x0], cc[y0, x0], cc[(y0 + 1) % ny, x0])
    fx = _parabolic_offset(cc[y0, (x0 - 1) % nx], cc[y0, x0], cc[y0, (x0 + 1) % nx])
    return np.array([dx + fx, dy + fy])


def _spectra(frames: np.ndarray) -> np.ndarray:
    """rfft2 of mean-subtracted frames, (n, ny, nx//2+1) complex64."""
    f = np.asarray(frames, dtype=np.float32)
    f = f - f.mean(axis=(1, 2), keepdims=True)
    return scipy.fft.rfft2(f, workers=_WORKERS)


def estimate_drift(
    frames: np.ndarray,
    pixel_size_angstrom: float,
    bfactor_angstrom2: float = 500.0,
    max_shift_px: float = 40.0,
    iterations: int = 10,
    tolerance_px: float = 0.01,
    smooth_sigma_frames: float = 0.0,
) -> np.ndarray:
    """Whole-frame drift of a movie by iterative cross-correlation.

    Each iteration aligns every frame against the sum of all OTHER aligned
    frames (leaving the frame out keeps its own shot noise from correlating
    with itself at zero shift), after a B-factor low-pass
    ``exp(-B k² / 4)`` (k in 1/Å) that suppresses noise and broadens the
    peak. The peak is located within ``max_shift_px`` and refined by a
    separable parabola; the iterations stop when no shift changes by more
    than ``tolerance_px``.

    Parameters
    ----------
    frames : np.ndarray
        (n, ny, nx) gain-corrected frames (counts), n >= 2.
    pixel_size_angstrom : float
        Pixel size, Å.
    bfactor_angstrom2 : float
        B-factor of the low-pass, Å² (MotionCor2 uses 100-150 at fine pixel
        sizes; larger values suit low dose per frame and coarse pixels).
    max_shift_px : float
        Largest shift searched per iteration, pixels.
    iterations : int
        Maximum number of refinement rounds.
    tolerance_px : float
        Convergence threshold on the largest shift update, pixels.
    smooth_sigma_frames : float
        If > 0, the trajectory is smoothed by a Gaussian of this width in
        frames (the drift is smooth, the per-frame estimates are noisy).

    Returns
    -------
    np.ndarray
        (n, 2) float64 shifts (dx, dy) in pixels of each frame's content
        relative to the frame sum (mean over frames zero); correct with
        :func:`shift_and_sum`.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] < 2:
        raise ValueError(f"frames must be (n >= 2, ny, nx), got shape {frames.shape}")
    n, ny, nx = frames.shape
    ky, kx = _frequencies(ny, nx)
    k2 = (ky**2 + kx**2) / float(pixel_size_angstrom) ** 2
    spectra = _spectra(frames) * np.exp(-bfactor_angstrom2 * k2 / 4.0).astype(np.float32)[None]
    shifts = np.zeros((n, 2))
    for _ in range(max(1, int(iterations))):
        aligned = np.stack([spectra[i] * _phase(ky, kx, -shifts[i]).astype(np.complex64) for i in range(n)])
        total = aligned.sum(axis=0)
        cc = scipy.fft.irfft2(aligned * np.conj(total - aligned), s=(ny, nx), workers=_WORKERS)
        update = np.array([_peak(cc[i], max_shift_px) for i in range(n)])
        shifts += update
        shifts -= shifts.mean(axis=0)
        if np.abs(update).max() < tolerance_px:
            break
    if smooth_sigma_frames > 0:
        shifts = ndimage.gaussian_filter1d(shifts, smooth_sigma_frames, axis=0, mode="nearest")
        shifts -= shifts.mean(axis=0)
    return shifts


def _shifted_sum(frames: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    n, ny, nx = frames.shape
    ky, kx = _frequencies(ny, nx)
    total = np.zeros((ny, nx // 2 + 1), dtype=np.complex128)
    for i in range(n):
        total += scipy.fft.rfft2(np.asarray(frames[i], dtype=np.float32), workers=_WORKERS) * _phase(ky, kx, -np.asarray(shifts[i]))
    return scipy.fft.irfft2(total, s=(ny, nx), workers=_WORKERS).astype(np.float32)


def shift_and_sum(frames: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Sum of the frames, each moved by ``-shifts[i]`` (Fourier-space, subpixel, periodic).

    Parameters
    ----------
    frames : np.ndarray
        (n, ny, nx) frames.
    shifts : np.ndarray
        (n, 2) shifts (dx, dy), pixels, as from :func:`estimate_drift`.

    Returns
    -------
    np.ndarray
        (ny, nx) float32 drift-corrected sum.
    """
    frames = np.asarray(frames)
    shifts = np.asarray(shifts, dtype=np.float64)
    if frames.ndim != 3 or shifts.shape != (frames.shape[0], 2):
        raise ValueError(f"need frames (n, ny, nx) and shifts (n, 2), got {frames.shape} and {shifts.shape}")
    return _shifted_sum(frames, shifts)


def even_odd_sums(frames: np.ndarray, shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drift-corrected sums of the even (0, 2, 4, ...) and odd (1, 3, ...) frames (0-based).

    ``even + odd`` equals :func:`shift_and_sum` to float precision; the two
    halves have independent shot noise (for noise2noise denoising and
    half-tomograms).

    Returns
    -------
    tuple of np.ndarray
        (even, odd), each (ny, nx) float32.
    """
    frames = np.asarray(frames)
    shifts = np.asarray(shifts, dtype=np.float64)
    return shift_and_sum(frames[0::2], shifts[0::2]), shift_and_sum(frames[1::2], shifts[1::2])


def correct_movie(
    frames: np.ndarray,
    pixel_size_angstrom: float,
    gain: np.ndarray | None = None,
    flip: str | None = None,
    rotate_quarter_turns: int = 0,
    gain_source: str | PathLike = "gain reference",
    **drift_options,
) -> dict:
    """Gain-correct a movie, estimate its drift and sum it.

    Parameters
    ----------
    frames : np.ndarray
        (n, ny, nx) raw frames.
    pixel_size_angstrom : float
        Pixel size, Å.
    gain, flip, rotate_quarter_turns, gain_source
        See :func:`apply_gain`.
    **drift_options
        Passed to :func:`estimate_drift` (``bfactor_angstrom2``,
        ``max_shift_px``, ``iterations``, ``tolerance_px``, ``smooth_sigma_frames``).

    Returns
    -------
    dict
        ``sum``, ``even``, ``odd``: (ny, nx) float32 drift-corrected sums
        (all frames, even frames, odd frames); ``shifts``: (n, 2) (dx, dy) px.
    """
    corrected = apply_gain(frames, gain, flip, rotate_quarter_turns, gain_source)
    if corrected.shape[0] < 2:
        shifts = np.zeros((corrected.shape[0], 2))
    else:
        shifts = estimate_drift(corrected, pixel_size_angstrom, **drift_options)
    even, odd = even_odd_sums(corrected, shifts)
    return {"sum": even + odd, "even": even, "odd": odd, "shifts": shifts}
