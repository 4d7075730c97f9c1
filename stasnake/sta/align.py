"""Particle alignment: angular and shift search maximising the wedge-constrained normalised CC.

Scoring (Dynamo's constrained cross-correlation, global normalisation): for a
candidate pose ``R`` (active, reference -> tomogram on (x, y, z) vectors) the
reference, masked in its own frame by the alignment mask (the mask rotates with
it), is rotated, given the particle's missing wedge ``W`` and the band-pass
``B`` in Fourier space, and correlated with the band-passed particle for every
allowed shift ``s``::

    CC(R, s) = sum_k Re[conj(T_R(k)) P'(k) exp(2 pi i k.s / n)] / (||T_R'|| ||P'||)
    T_R(k) = F_ref(R^T k),  T_R' = T_R W B,  P' = P W B

``k`` in Fourier pixels of the full box (cycles per box), ``s`` in full-size
pixels. With the convention ``particle(R p + c + s) = reference(p + c)``
(``c`` the box centre, index ``n // 2``) the particle's centred spectrum is
``P(k) = F_ref(R^T k) exp(-2 pi i k.s / n)``, so CC peaks at the true (R, s).

Speed (see :mod:`stasnake.kernels.ccsearch`): the reference spectrum is
computed once (2x zero-padded, gridding-corrected), each particle's spectrum
once, and each orientation costs a trilinear sampling of the few thousand
Fourier pixels inside the band plus a pruned inverse DFT onto the shift window
only (no 3-D FFT per orientation). The window maximum is then refined by
Newton iterations on ``log CC`` with its analytic gradient and Hessian: the
subpixel shift, and the peak value that ranks the orientations (values at
integer shifts, even parabola-interpolated, are off by up to ~10 % of the CC
for a sharp peak and mis-rank orientations). The refined shift stays inside
the allowed ellipsoid.

The band-pass multiplies both spectra (the CC sees ``B^2``); ``k = 0`` is
always excluded (the CC is of zero-mean maps).

Parameters follow Dynamo (``docs/alignment-projects.md``): ``low``/``high`` are
the low-/high-pass cutoffs in Fourier pixels of the full box with raised-cosine
edges of 2 Fourier pixels (pass band ``high <= |k| <= low``, zero below
``high - 2`` and above ``low + 2``); ``dim`` bins on the fly, which here only
restricts ``|k| < dim / 2`` and sets the shift step to ``n / dim`` full-size
pixels; shift limits are an ellipsoid in full-size pixels in the box
(tomogram) frame about each particle's shift centre.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft

from stasnake.errors import InputError
from stasnake.kernels.ccsearch import (
    ParticleArrays,
    ReferenceArrays,
    WindowArrays,
    score_candidates,
)
from stasnake.sta.angles import AngularScan
from stasnake.sta.transfer import transfer_at_frequencies
from stasnake.sta.wedge import measured_in_tomogram

EDGE_PX = 2.0  # width of the raised-cosine edges of the band-pass, Fourier pixels
PARTICLE_BATCH = {"cpu": 16, "cuda": 256}  # particles searched together (one kernel call per level)


@dataclass(frozen=True)
class SearchParams:
    """One alignment round's search numbers (Dynamo names in brackets; angles in degrees).

    Parameters
    ----------
    cone_range, cone_sampling : float
        Full cone aperture (``cone_range``, ``cr``) and step (``cone_sampling``, ``cs``).
    inplane_range, inplane_sampling : float
        Full in-plane interval (``inplane_range``, ``ir``) and step (``is``).
    refine : int
        Refinement levels (``refine``, ``rf``); each halves the steps.
    refine_factor : float
        Range of a refinement level in steps of the previous level (``refine_factor``).
    low : float or None
        Low-pass cutoff (``low``), Fourier pixels of the full box (the larger band
        edge); None = the binned Nyquist ``dim / 2``.
    high : float
        High-pass cutoff (``high``), Fourier pixels (the smaller band edge).
    dim : int or None
        On-the-fly binning (``dim``): particle side in this round; None = the full box.
    symmetry_order : int
        N of the reference's Cn symmetry (``sym``); restricts a global in-plane scan.
    cone_flip, inplane_flip : int
        Dynamo flip modes 0, 1, 2.
    shift_limits_xyz : tuple of float or None
        Semi-axes (x, y, z) of the allowed-shift ellipsoid (``area_search``), full-size
        pixels, about each particle's shift centre; None = any shift in the (periodic) box.
    shift_frame : {"box", "particle"}
        Axes of the ellipsoid: the box (tomogram) axes, or each particle's own axes at its
        current pose (``R @ limits``: z along the particle's z, e.g. a VLP's surface normal;
        our addition, the protocol's "shift along z only" for particles on a sphere).
    """

    cone_range: float
    cone_sampling: float
    inplane_range: float
    inplane_sampling: float
    refine: int = 0
    refine_factor: float = 2.0
    low: float | None = None
    high: float = 2.0
    dim: int | None = None
    symmetry_order: int = 1
    cone_flip: int = 0
    inplane_flip: int = 0
    shift_limits_xyz: tuple[float, float, float] | None = (4, 4, 4)
    shift_frame: str = "box"

    def scan(self) -> AngularScan:
        """The base :class:`AngularScan` (validates the angular keys)."""
        return AngularScan(
            self.cone_range,
            self.cone_sampling,
            self.inplane_range,
            self.inplane_sampling,
            self.symmetry_order,
            self.cone_flip,
            self.inplane_flip,
        )


@dataclass(frozen=True)
class PreparedReference:
    """A reference ready for :func:`align_particles` (from :func:`prepare_reference`).

    Attributes
    ----------
    box : int
        Full box side n (pixels).
    dim : int
        Binned side used for the band limit and the shift step.
    low, high : float
        Effective band edges (Fourier pixels).
    arrays : ReferenceArrays
        Kernel inputs: oversampled spectrum and compact k-list.
    k_xyz : np.ndarray
        (L, 3) int64 Fourier pixels (kx >= 0 half space).
    weight_band : np.ndarray
        (L,) float64 Hermitian multiplicity (2: each listed k stands for k and -k) times
        the band-pass B(|k|).
    rfft_index : np.ndarray
        (L,) int64 flat index of each k in a particle's ``rfftn`` (n, n, n // 2 + 1).
    reference : np.ndarray
        (n, n, n) float32 unmasked reference (to re-prepare with another mask).
    """

    box: int
    dim: int
    low: float
    high: float
    arrays: ReferenceArrays
    k_xyz: np.ndarray
    weight_band: np.ndarray
    rfft_index: np.ndarray
    reference: np.ndarray


@dataclass(frozen=True)
class AlignmentResult:
    """Best pose of every particle.

    Attributes
    ----------
    matrices : np.ndarray
        (m, 3, 3) active poses (reference -> tomogram).
    shifts_xyz : np.ndarray
        (m, 3) shifts (x, y, z), full-size pixels.
    cc : np.ndarray
        (m,) normalised constrained CC at the best pose.
    n_evaluated : int
        Orientation evaluations done (each one scans the whole shift window).
    """

    matrices: np.ndarray
    shifts_xyz: np.ndarray
    cc: np.ndarray
    n_evaluated: int


# ----------------------------------------------------------------------------- validation
def _band(params: SearchParams, box: int) -> tuple[int, float, float]:
    """(dim, low, high) checked against the box; InputError naming the key."""
    dim = box if params.dim is None else params.dim
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or not 8 <= dim <= box:
        raise InputError(
            "dim", f"must be an integer from 8 to the box size {box}, not {params.dim!r}"
        )
    dim = int(dim)
    high = params.high
    if not (isinstance(high, (int, float, np.number)) and np.isfinite(high) and high >= 0):
        raise InputError("high", f"must be a number of Fourier pixels >= 0, not {high!r}")
    low = dim / 2.0 if params.low is None else params.low
    if not (isinstance(low, (int, float, np.number)) and np.isfinite(low)):
        raise InputError("low", f"must be a number of Fourier pixels, not {low!r}")
    if low <= high:
        raise InputError(
            "low", f"low-pass cutoff {low} must be larger than the high-pass cutoff high = {high}"
        )
    if low > dim / 2.0:
        raise InputError(
            "low",
            f"{low} Fourier pixels is beyond the Nyquist frequency dim/2 = {dim / 2:g} "
            f"of this round (dim {dim})",
        )
    return dim, float(low), float(high)


def _shift_limits(params: SearchParams) -> np.ndarray | None:
    lim = params.shift_limits_xyz
    if lim is None:
        return None
    arr = np.asarray(lim, dtype=np.float64).ravel()
    if arr.size == 1:
        arr = np.repeat(arr, 3)
    if arr.size != 3 or not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InputError(
            "shift_limits_xyz", f"must be three shift limits >= 0 (pixels) or None, not {lim!r}"
        )
    return arr


def _as_volume(volume, what: str) -> np.ndarray:
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise InputError(what, f"must be a cubic (n, n, n) volume, got shape {vol.shape}")
    return vol


def _as_rotations(matrices, m: int) -> np.ndarray:
    r = np.asarray(matrices, dtype=np.float64)
    if r.shape != (m, 3, 3):
        raise InputError("matrices", f"must have shape ({m}, 3, 3), not {r.shape}")
    err = np.abs(r @ r.transpose(0, 2, 1) - np.eye(3)).max(axis=(1, 2)) if m else np.zeros(0)
    bad = np.flatnonzero((err > 1e-4) | (np.linalg.det(r) < 0)) if m else []
    if len(bad):
        raise InputError(f"matrices[{bad[0]}]", "is not a rotation (orthonormal, det +1)")
    return r


def _as_rows(values, m: int, width: int, key: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (m, width) or not np.all(np.isfinite(arr)):
        raise InputError(key, f"must be a finite ({m}, {width}) array, not shape {arr.shape}")
    return arr


# ----------------------------------------------------------------------------- spectra
def bandpass(radius, low: float, high: float, edge_px: float = EDGE_PX) -> np.ndarray:
    """Dynamo band-pass: 1 on ``high <= r <= low``, raised-cosine edges of ``edge_px`` outside.

    Parameters
    ----------
    radius : array_like
        |k| in Fourier pixels.
    low, high : float
        Low-pass (upper) and high-pass (lower) cutoffs, Fourier pixels.
    edge_px : float
        Width of each edge: the filter is 0 at ``r <= high - edge`` and ``r >= low + edge``.

    Returns
    -------
    np.ndarray
        float64 filter values in [0, 1].
    """
    r = np.asarray(radius, dtype=np.float64)
    up = np.clip((r - low) / edge_px, 0.0, 1.0)
    down = np.clip((high - r) / edge_px, 0.0, 1.0)
    return 0.25 * (1.0 + np.cos(np.pi * up)) * (1.0 + np.cos(np.pi * down))


def _compact_list(box: int, dim: int, low: float, high: float):
    """Fourier pixels inside the band on the kx >= 0 half grid, and the dense-cube bookkeeping."""
    k_top = min(low + EDGE_PX, dim / 2.0)
    kk = int(math.ceil(k_top))
    kz, ky, kx = (
        a.ravel()
        for a in np.meshgrid(
            np.arange(-kk, kk + 1), np.arange(-kk, kk + 1), np.arange(kk + 1), indexing="ij"
        )
    )  # kx fastest
    r = np.sqrt(kx * kx + ky * ky + kz * kz)
    band = bandpass(r, low, high)
    # kx = 0 holds k and -k: keep one of each pair (Hermitian symmetry), every pixel then counts twice
    mirrored = (kx == 0) & ((ky < 0) | ((ky == 0) & (kz < 0)))
    keep = (r > 0) & (r < dim / 2.0) & (band > 0) & ~mirrored
    if not np.any(keep):
        raise InputError("low", f"the band high = {high} .. low = {low} holds no Fourier pixel")
    kx, ky, kz, r, band = kx[keep], ky[keep], kz[keep], r[keep], band[keep]
    k_max = int(math.ceil(r.max()))
    d = 2 * k_max + 1
    iy, iz = ky + k_max, kz + k_max
    cell = (kx * d + iy) * d + iz  # dense cube [kx, ky + K, kz + K]
    row_first = np.full(k_max + 1, d, np.int64)
    row_last = np.full(k_max + 1, -1, np.int64)
    np.minimum.at(row_first, kx, iy)
    np.maximum.at(row_last, kx, iy)
    span_lo = np.where(row_last >= 0, row_first * d, 0).astype(np.int32)
    span_hi = np.where(row_last >= 0, (row_last + 1) * d, 0).astype(np.int32)
    kz_lo = np.full(d, d, np.int64)
    kz_hi = np.full(d, -1, np.int64)
    np.minimum.at(kz_lo, iy, iz)
    np.maximum.at(kz_hi, iy, iz)
    kz_lo, kz_hi = np.where(kz_hi >= 0, kz_lo, 0).astype(np.int32), (kz_hi + 1).astype(np.int32)
    weight = np.full(len(kx), 2.0)
    rfft_index = ((kz % box) * box + (ky % box)) * (box // 2 + 1) + kx
    k_xyz = np.column_stack([kx, ky, kz]).astype(np.int64)
    return (
        k_xyz,
        weight * band,
        rfft_index.astype(np.int64),
        k_max,
        cell.astype(np.int32),
        (span_lo, span_hi, kz_lo, kz_hi),
    )


def _binned_centred(volume: np.ndarray, dim: int) -> np.ndarray:
    """Fourier crop of a (n, n, n) volume to (dim,)*3, origin moved to index 0 (|k_i| < dim / 2 kept)."""
    n = volume.shape[0]
    spec = scipy.fft.rfftn(np.fft.ifftshift(volume), workers=-1)
    kc = (dim + 1) // 2 - 1
    f_n = np.rint(np.fft.fftfreq(n) * n).astype(int)
    src = np.flatnonzero(np.abs(f_n) <= kc)
    dst = f_n[src] % dim
    small = np.zeros((dim, dim, dim // 2 + 1), np.complex64)
    small[np.ix_(dst, dst, np.arange(kc + 1))] = spec[np.ix_(src, src, np.arange(kc + 1))]
    return scipy.fft.irfftn(small, s=(dim,) * 3, workers=-1).astype(np.float32)


def _oversampled_cube(volume: np.ndarray, dim: int, k_max: float) -> tuple[np.ndarray, int]:
    """Centred spectrum of the binned volume, 2x oversampled (q = 2 k), gridding-corrected, cropped."""
    small = _binned_centred(volume, dim)
    n_pad = 2 * dim
    x = (
        (np.arange(dim) + dim // 2) % dim
    ) - dim // 2  # signed position of each index about the origin
    g = (
        np.sinc(x / n_pad) ** 2
    )  # trilinear interpolation in Fourier space multiplies real space by this
    small = small / (g[:, None, None] * g[None, :, None] * g[None, None, :])
    padded = np.zeros((n_pad,) * 3, np.float32)
    t = x % n_pad
    padded[np.ix_(t, t, t)] = small
    spec = scipy.fft.rfftn(padded, workers=-1)
    half = int(math.ceil(2 * k_max)) + 1
    q = np.arange(-half, half + 1)
    qz, qy, qx = q[:, None, None], q[None, :, None], q[None, None, :]
    direct = (qx % n_pad) <= n_pad // 2
    sign = np.where(direct, 1, -1)
    vals = spec[(sign * qz) % n_pad, (sign * qy) % n_pad, (sign * qx) % n_pad]
    cube = np.where(direct, vals, np.conj(vals))
    return np.ascontiguousarray(cube, np.complex64), half


def prepare_reference(reference, params: SearchParams, alignment_mask=None) -> PreparedReference:
    """Mask, centre and transform a reference once per iteration for :func:`align_particles`.

    Parameters
    ----------
    reference : array_like
        (n, n, n) map (z, y, x), centre at index ``n // 2``.
    params : SearchParams
        The round's parameters (``low``, ``high``, ``dim`` are used here).
    alignment_mask : array_like, optional
        (n, n, n) mask in the reference frame (values 0..1). The reference is
        multiplied by it after subtracting its mean inside the mask.

    Returns
    -------
    PreparedReference

    Raises
    ------
    InputError
        For a non-cubic reference, a mask of another shape, or bad ``dim``/``low``/``high``.
    """
    ref = _as_volume(reference, "reference")
    n = ref.shape[0]
    dim, low, high = _band(params, n)
    params.scan()
    _shift_limits(params)
    if alignment_mask is None:
        masked = ref - ref.mean()
    else:
        mask = np.asarray(alignment_mask, dtype=np.float32)
        if mask.shape != ref.shape:
            raise InputError(
                "alignment mask", f"alignment mask of shape {mask.shape} for a box of {ref.shape}"
            )
        total = float(mask.sum())
        if not np.isfinite(total) or total <= 0:
            raise InputError("alignment mask", "is empty (sums to zero)")
        masked = mask * (ref - float((ref * mask).sum()) / total)
    k_xyz, weight_band, rfft_index, k_max, cell, rows = _compact_list(n, dim, low, high)
    cube, centre = _oversampled_cube(masked, dim, float(np.sqrt((k_xyz**2).sum(1)).max()))
    arrays = ReferenceArrays(cube, centre, k_xyz.astype(np.float32), cell, *rows, k_max)
    return PreparedReference(n, dim, low, high, arrays, k_xyz, weight_band, rfft_index, ref)


def _window(
    box: int, dim: int, k_max: int, limits: np.ndarray | None
) -> tuple[WindowArrays, float]:
    """Shift window in steps of ``box / dim`` full-size pixels inside the limits; returns it and the step."""
    step = box / dim
    if limits is None:
        half = np.full(3, dim // 2)
    else:
        half = np.minimum(np.floor(limits / step + 1e-9), dim // 2).astype(int)
    return _window_grid(box, k_max, step, half, limits), step


def _rotated_window(
    box: int, dim: int, k_max: int, limits: np.ndarray, rotation: np.ndarray
) -> tuple[WindowArrays, float]:
    """Shift window of the ellipsoid ``limits`` on the axes of ``rotation`` (shifts ``s`` with
    ``sum_j ((R^T s)_j / a_j)^2 <= 1``); its axis-aligned bounding ellipsoid clips the refinement."""
    step = box / dim
    r = np.asarray(rotation, np.float64)
    bound = np.sqrt((r**2) @ (limits**2))  # half-extent of the rotated ellipsoid along x, y, z
    half = np.minimum(np.floor(bound / step + 1e-9), dim // 2).astype(int)
    j = [np.arange(-h, h + 1) * step for h in half]
    sz, sy, sx = np.meshgrid(j[2], j[1], j[0], indexing="ij")
    local = np.einsum("ji,...j->...i", r, np.stack([sx, sy, sz], axis=-1))  # R^T s
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(local == 0, 0.0, np.where(limits > 0, (local / np.where(limits > 0, limits, 1)) ** 2, np.inf))
    valid = terms.sum(axis=-1) <= 1.0 + 1e-9
    return _window_grid(box, k_max, step, half, bound, valid=valid), step


def _window_grid(
    box: int, k_max: int, step: float, half, limits: np.ndarray | None, valid: np.ndarray | None = None
) -> WindowArrays:
    """Shifts ``j * step`` (|j_i| <= half_i) and the mask of those inside the ellipsoid ``limits``
    (or the given ``valid`` mask)."""
    j = [np.arange(-h, h + 1) for h in half]
    kx = np.arange(k_max + 1)
    kyz = np.arange(-k_max, k_max + 1)
    ex = np.exp(2j * np.pi * np.outer(kx, j[0] * step) / box)  # (K + 1, Wx)
    ey, ez = (np.exp(2j * np.pi * np.outer(jj * step, kyz) / box) for jj in j[1:])  # (W, 2K + 1)
    if valid is not None:
        pass
    elif limits is None:
        valid = np.ones((len(j[2]), len(j[1]), len(j[0])), bool)
    else:
        terms = []
        for jj, lim in zip(j, limits, strict=True):
            s = jj * step
            terms.append(np.where(s == 0, 0.0, (s / lim) ** 2 if lim > 0 else np.inf))
        valid = (
            terms[2][:, None, None] + terms[1][None, :, None] + terms[0][None, None, :]
        ) <= 1.0 + 1e-9
    parts = [
        a
        for e in (ex, ey, ez)
        for a in (
            np.ascontiguousarray(e.real, np.float32),
            np.ascontiguousarray(e.imag, np.float32),
        )
    ]
    if limits is None:
        inv2 = (0.0, 0.0, 0.0)
    else:
        inv2 = tuple(float(1.0 / lim**2) if lim > 0 else 1e30 for lim in limits)
    return WindowArrays(*parts, valid, float(step), int(box), inv2)


def _particle_spectra(particles, indices, prep: PreparedReference, tilt_ranges: np.ndarray, transfers=None):
    """Centred spectra (count, L) on the compact list and their weights (read one at a time).

    Returns the spectra and three (count, L) weights: of the particle in the numerator
    (``w M^2``, times ``H`` with a transfer), of the reference's norm (``w M^2``, times
    ``H^2``) and of the particle's norm (``w M^2``), ``M = W B``.
    """
    n = prep.box
    k = prep.k_xyz.astype(np.float64)
    centre_phase = np.exp(2j * np.pi * (k @ np.full(3, n // 2, np.float64)) / n)
    wedges: dict[tuple[float, float], np.ndarray] = {}
    spectra = np.empty((len(indices), len(k)), np.complex128)
    weights = np.empty((len(indices), len(k)), np.float64)
    for row, i in enumerate(indices):
        vol = np.asarray(particles[i], dtype=np.float32)
        if vol.shape != (n, n, n):
            raise InputError(
                f"particle {i}",
                f"box of shape {vol.shape} does not match the reference box {(n,) * 3}",
            )
        spectra[row] = scipy.fft.rfftn(vol, workers=-1).ravel()[prep.rfft_index] * centre_phase
        key = (float(tilt_ranges[i, 0]), float(tilt_ranges[i, 1]))
        if key not in wedges:
            wedge = measured_in_tomogram(k[:, 0], k[:, 1], k[:, 2], key)
            wedges[key] = wedge * prep.weight_band * (prep.weight_band / 2.0)
        weights[row] = wedges[key]  # w M^2 with M = W B
    if transfers is None:
        return spectra, weights, weights, weights
    h = np.stack([transfer_at_frequencies(k, *transfers[i]) for i in indices])
    return spectra, weights * h, weights * h * h, weights


def _particle_arrays(
    spectra: np.ndarray, weights, prep: PreparedReference, centres: np.ndarray
) -> ParticleArrays:
    """Kernel inputs of particles whose shift windows are centred at ``centres`` (count, 3) pixels.

    ``weights``: the three weights of :func:`_particle_spectra` (numerator, reference
    norm, particle norm).
    """
    numerator, reference_norm, particle_norm = weights
    k = prep.k_xyz.astype(np.float64)
    q = numerator * spectra * np.exp(2j * np.pi * (centres @ k.T) / prep.box)
    p_norm = np.sqrt(np.sum(particle_norm * (spectra.real**2 + spectra.imag**2), axis=1))
    return ParticleArrays(
        np.ascontiguousarray(q.real, np.float32),
        np.ascontiguousarray(q.imag, np.float32),
        reference_norm.astype(np.float32),
        p_norm.astype(np.float32),
    )


def _levels(params: SearchParams) -> list[np.ndarray]:
    """Relative candidate sets of the base scan and of each refinement level (identity dropped there)."""
    scan = params.scan()
    if (
        isinstance(params.refine, bool)
        or not isinstance(params.refine, (int, np.integer))
        or params.refine < 0
    ):
        raise InputError("refine", f"must be an integer >= 0, not {params.refine!r}")
    levels = [scan.relative()]
    for level in range(1, int(params.refine) + 1):
        levels.append(scan.refined(level, params.refine_factor).relative()[1:])
    return levels


def align_particles(
    particles,
    matrices,
    shifts_xyz,
    tilt_ranges_deg,
    reference: PreparedReference,
    params: SearchParams,
    shift_centres_xyz=None,
    device: str = "cpu",
    progress: Callable[[int, int], None] | None = None,
    transfers=None,
) -> AlignmentResult:
    """Search orientations and shifts of each particle around its current pose.

    Parameters
    ----------
    particles : array_like or Sequence
        (m, n, n, n) particles (z, y, x), or a sequence of (n, n, n) volumes
        (a memmap or lazy reader: read one at a time).
    matrices : array_like
        (m, 3, 3) current active poses (reference -> tomogram).
    shifts_xyz : array_like
        (m, 3) current shifts, full-size pixels (x, y, z). Only checked: the
        search window is centred on ``shift_centres_xyz``.
    tilt_ranges_deg : array_like
        (m, 2) (min, max) tilt of each particle's tomogram (Dynamo ``ymintilt``, ``ymaxtilt``).
    reference : PreparedReference
        From :func:`prepare_reference` with the same ``low``, ``high``, ``dim``.
    params : SearchParams
        Angular scan, refinement and shift limits of the round.
    shift_centres_xyz : array_like, optional
        (m, 3) centre of each particle's allowed-shift ellipsoid, full-size pixels;
        None = the box centre (zeros). Dynamo ``area_search_modus`` 2 passes the current shifts.
    device : {"cpu", "cuda"}
        Where the per-orientation kernels run.
    progress : callable, optional
        Called as ``progress(done, total)`` after each batch of particles.
    transfers : sequence, optional
        (m,) per particle ``(tilts_rad, table, samples_per_pixel)``
        (:class:`stasnake.sta.transfer.ParticleTransfers`): the reference is
        scored as the particle should look, ``H T`` (CTF and exposure transfer
        ``H`` in the particle's frame): ``CC = sum conj(T) H B^2 P / (||H B T||
        ||W B P||)``, the matched filter that gives the frequencies each
        particle measured well their weight. None: the binary wedge.

    Returns
    -------
    AlignmentResult
        Best pose per particle (the first candidate of every scan is the current
        orientation, so the CC never decreases over the levels).
    """
    m = len(particles)
    if m == 0:
        return AlignmentResult(np.zeros((0, 3, 3)), np.zeros((0, 3)), np.zeros(0), 0)
    rots = _as_rotations(matrices, m)
    _as_rows(shifts_xyz, m, 3, "shifts_xyz")
    tilts = _as_rows(tilt_ranges_deg, m, 2, "tilt_ranges_deg")
    centres = (
        np.zeros((m, 3))
        if shift_centres_xyz is None
        else _as_rows(shift_centres_xyz, m, 3, "shift_centres_xyz")
    )
    _check_same_band(reference, params)
    limits = _shift_limits(params)
    if params.shift_frame not in ("box", "particle"):
        raise InputError("shift_frame", f"must be 'box' or 'particle', not {params.shift_frame!r}")
    per_particle = params.shift_frame == "particle" and limits is not None and np.ptp(limits) > 0
    window, step = _window(reference.box, reference.dim, reference.arrays.k_max, limits)
    levels = _levels(params)
    out_r, out_s, out_cc = rots.copy(), centres.copy(), np.zeros(m)
    n_eval = 0
    # an ellipsoid on each particle's axes differs per particle: one particle per kernel call
    batch = 1 if per_particle else PARTICLE_BATCH.get(device, 16)
    for start in range(0, m, batch):
        idx = np.arange(start, min(m, start + batch))
        if per_particle:
            window, _ = _rotated_window(reference.box, reference.dim, reference.arrays.k_max, limits, rots[start])
        spectra, *weights = _particle_spectra(particles, idx, reference, tilts, transfers)
        parts = _particle_arrays(spectra, weights, reference, centres[idx])
        best_r, best_cc, best_off = (
            rots[idx].copy(),
            np.full(len(idx), -np.inf),
            np.zeros((len(idx), 3)),
        )
        for rel in levels:
            if len(rel) == 0:
                continue
            cand = best_r[:, None] @ rel[None]
            cc, off = score_candidates(
                reference.arrays,
                window,
                parts,
                cand.reshape(-1, 3, 3),
                np.repeat(np.arange(len(idx)), len(rel)),
                device,
            )
            n_eval += cc.size
            cc, off = cc.reshape(len(idx), len(rel)), off.reshape(len(idx), len(rel), 3)
            arg = np.argmax(cc, axis=1)
            top = cc[np.arange(len(idx)), arg]
            better = top > best_cc
            best_r[better] = cand[better, arg[better]]
            best_cc[better] = top[better]
            best_off[better] = off[better, arg[better]]
        out_r[idx], out_cc[idx], out_s[idx] = best_r, best_cc, centres[idx] + best_off
        if progress is not None:
            progress(int(idx[-1]) + 1, m)
    return AlignmentResult(out_r, out_s, out_cc, n_eval)


def _check_same_band(reference: PreparedReference, params: SearchParams) -> None:
    if not isinstance(reference, PreparedReference):
        raise TypeError("reference must be a PreparedReference (see prepare_reference)")
    dim, low, high = _band(params, reference.box)
    if (dim, low, high) != (reference.dim, reference.low, reference.high):
        raise InputError(
            "reference",
            f"was prepared for dim {reference.dim}, low {reference.low}, "
            f"high {reference.high}, not dim {dim}, low {low}, high {high}",
        )


def score_particles(
    particles,
    matrices,
    shifts_xyz,
    tilt_ranges_deg,
    reference,
    params: SearchParams,
    mask=None,
    device: str = "cpu",
    transfers=None,
) -> np.ndarray:
    """Constrained CC of each particle at its given pose (no search).

    Parameters
    ----------
    particles, matrices, shifts_xyz, tilt_ranges_deg
        As in :func:`align_particles`; the CC is evaluated at exactly ``shifts_xyz``.
    reference : PreparedReference or array_like
        A prepared reference, or an (n, n, n) map prepared here.
    params : SearchParams
        Only ``low``, ``high`` and ``dim`` are used.
    mask : array_like, optional
        (n, n, n) mask replacing the alignment mask (e.g. a classification mask).
    device : {"cpu", "cuda"}
        Where the kernel runs.
    transfers : sequence, optional
        Per-particle CTF transfers, as in :func:`align_particles`.

    Returns
    -------
    np.ndarray
        (m,) float64 normalised CC, same score as the search.
    """
    if isinstance(reference, PreparedReference):
        if mask is not None:
            reference = prepare_reference(reference.reference, params, mask)
    else:
        reference = prepare_reference(reference, params, mask)
    _check_same_band(reference, params)
    m = len(particles)
    rots = _as_rotations(matrices, m)
    shifts = _as_rows(shifts_xyz, m, 3, "shifts_xyz")
    tilts = _as_rows(tilt_ranges_deg, m, 2, "tilt_ranges_deg")
    window, _ = _window(reference.box, reference.dim, reference.arrays.k_max, np.zeros(3))
    out = np.zeros(m)
    batch = 16 * PARTICLE_BATCH.get(device, 16)
    for start in range(0, m, batch):
        idx = np.arange(start, min(m, start + batch))
        spectra, *weights = _particle_spectra(particles, idx, reference, tilts, transfers)
        parts = _particle_arrays(spectra, weights, reference, shifts[idx])
        cc, _ = score_candidates(
            reference.arrays, window, parts, rots[idx], np.arange(len(idx)), device, refine=False
        )
        out[idx] = cc
    return out


__all__: Sequence[str] = [
    "SearchParams",
    "PreparedReference",
    "AlignmentResult",
    "prepare_reference",
    "align_particles",
    "score_particles",
    "bandpass",
]
