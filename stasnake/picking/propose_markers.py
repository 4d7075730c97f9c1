"""Autopilot for the marker steps of the HIV-1 VLP protocol: unit centres proposed from a map alone.

Steps 3B and 5B of the Dynamo protocol ask a person to mark, in ChimeraX, the centre of the most
central lattice unit of the first (C1) average (``reference_center.cmm``) and the centres of all
units visible in the C6-symmetrised "average of averages" (``particle_centers.cmm``). The
functions here propose those markers from the map, its pixel size and the expected lattice
spacing only (no knowledge of the unit's structure), for review by the user.

Conventions
-----------
Maps are (z, y, x) cubic arrays; the box centre is index ``n // 2`` on each axis. Returned
markers are 1-based pixel coordinates (x, y, z) of the map (the box centre is ``n // 2 + 1``),
as :func:`stasnake.io.cmm.pixels_to_markers` expects. The particle z axis is the VLP's outward
normal, so unit six-fold axes are (close to) parallel to z. ``protein_sign`` is the sign of
protein density in the map: -1 for averages that keep the tomogram contrast (protein dark, the
default of this project), +1 for contrast-inverted maps.

Method
------
*Unit axis* (:func:`propose_reference_center`): every candidate axis position (x, y) within
``0.8 spacing`` of the box centre (1 px grid) is scored by the C_n rotational self-similarity of
the map about a z-parallel axis through it. The map is resampled on a cylindrical grid (radius
``spacing / 2``) about the axis, the per-ring mean (angular mode m = 0, which a flat membrane or
any rotationally symmetric density fills) is discarded, and the score is the mean normalised
correlation of the map with its copies rotated by ``k 360 / n``, k = 1..n-1, computed from the
angular Fourier powers: ``(P_sym - P_other / (n - 1)) / (P_sym + P_other)`` with ``P_sym`` the
power in modes m = n, 2n, ... It is 1 for a perfect C_n axis and <= 0 at the lattice's
three-fold and two-fold sites. Only the slices within ``+- spacing / 2`` of the protein layer
are used: the layer is the z of maximal C_n power summed over all candidate axes (a tilted,
curved membrane has strong low-order modulation that would otherwise swamp the scores). Among
the local score maxima above ``median + 0.5 (max - median)``, the one nearest the box centre is
taken, then refined on 0.5 and 0.1 px grids.

*Unit height*: along that axis, the centre of mass of the cylinder-averaged density above a
linear baseline, in a window of ``+- spacing / 2`` re-centred iteratively; for a lattice of
touching units this is the unit's centre of mass along its axis (the centre of
:func:`stasnake.synth.unit.unit_map`). It starts from, and stays within ``spacing / 3`` of, the
centroid of the C_n angular power along the axis, which is used instead when the window shows
no mostly-positive layer (a map whose layer-mean profile is lost to a missing wedge).

*All units* (:func:`propose_unit_centres`): the map's own central unit, cut in a ball of radius
``spacing / 2`` around that centre, is the template of a masked normalised cross-correlation
(Padfield 2012, FFT-based, the box edge treated as a validity mask, no wrap-around) over the
map; peaks are kept greedily with non-maximum suppression at ``0.7 spacing``, a score of at
least ``min_score_fraction`` (0.65) of the central unit's and a centre at least
``edge_margin_px`` inside the box on every axis, refined to subpixel precision by per-axis
parabolas. Finally only peaks linked to the central unit by a chain of lattice steps
(``0.7-1.35 spacing`` long, ``|dz| <= 0.7 |d_xy|``) are kept (:func:`lattice_connected`), which
drops the weaker matches in the membrane and in the lumen.

Limits (synthetic tests, 5.4 Å pixels, 75 Å spacing): reliable up to a noise SD about equal to
the signal SD of the map; with twice that, the wrong unit or height is often chosen. Proposals
are for review, as the protocol's manual markers are.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.ndimage

from stasnake.errors import InputError

#: Gaussian pre-filter of the maps, as a fraction of the lattice spacing (sigma, pixels).
PREFILTER_SIGMA_FRACTION = 1.0 / 12.0
#: Non-maximum suppression distance between proposed units, fraction of the spacing.
NMS_FRACTION = 0.7
#: Default distance of unit centres from the box edge, fraction of the spacing.
EDGE_MARGIN_FRACTION = 1.0 / 3.0
#: Default minimum CC score of a unit relative to the central unit's.
MIN_SCORE_FRACTION = 0.65
#: Lattice steps: neighbour distance range (fractions of the spacing) and the largest
#: |dz| / |d_xy| of a step (units lie in a layer normal to z; curvature tilts it).
STEP_RANGE = (0.7, 1.35)
MAX_STEP_SLOPE = 0.7
#: Angular samples of the cylindrical grid (a multiple of 6 and 4).
_N_PHI = 36


def check_map(
    average, pixel_size_angstrom, lattice_spacing_angstrom, where: str = "average"
) -> np.ndarray:
    """Validate a map and the lattice parameters; return the map as float64.

    Raises
    ------
    InputError
        Not a finite cubic 3-D array, non-positive pixel size or spacing, or a lattice
        spacing that does not fit in the box.
    """
    vol = np.asarray(average)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise InputError(where, f"map must be a cubic 3-D array (z, y, x), got shape {vol.shape}")
    if vol.shape[0] < 8:
        raise InputError(where, f"map box of {vol.shape[0]} px is too small (need >= 8)")
    if not np.issubdtype(vol.dtype, np.number) or not np.all(np.isfinite(vol)):
        raise InputError(where, "map contains non-finite values (NaN or inf)")
    px = float(pixel_size_angstrom)
    spacing = float(lattice_spacing_angstrom)
    if not np.isfinite(px) or px <= 0:
        raise InputError(
            where, f"pixel size must be a positive number of Å, got {pixel_size_angstrom}"
        )
    if not np.isfinite(spacing) or spacing <= 0:
        raise InputError(
            where, f"lattice spacing must be a positive number of Å, got {lattice_spacing_angstrom}"
        )
    spacing_px = spacing / px
    if spacing_px >= vol.shape[0]:
        raise InputError(
            where,
            f"lattice spacing {spacing:g} Å = {spacing_px:.1f} px does not fit in the "
            f"{vol.shape[0]} px box: check the pixel size and the spacing",
        )
    if spacing_px < 4.0:
        raise InputError(
            where,
            f"lattice spacing {spacing_px:.1f} px is too small to resolve units (need >= 4 px)",
        )
    if float(np.std(vol)) == 0.0:
        raise InputError(where, "map is constant")
    return vol.astype(np.float64)


def _check_order_sign(symmetry_order, protein_sign) -> tuple[int, float]:
    n = int(symmetry_order)
    if n < 2 or n != symmetry_order:
        raise InputError("symmetry_order", f"must be an integer >= 2, got {symmetry_order}")
    sign = float(protein_sign)
    if sign not in (-1.0, 1.0):
        raise InputError("protein_sign", f"must be +1 or -1, got {protein_sign}")
    return n, sign


def prepare_map(vol: np.ndarray, spacing_px: float, protein_sign: float) -> np.ndarray:
    """Protein-positive, low-pass filtered (sigma ``spacing / 12`` px), zero-mean, unit-SD copy."""
    v = scipy.ndimage.gaussian_filter(
        float(protein_sign) * vol, PREFILTER_SIGMA_FRACTION * spacing_px
    )
    v -= v.mean()
    return v / v.std()


def _cylinder_samples(v: np.ndarray, axes_xy: np.ndarray, radius_px: float, z_index: np.ndarray):
    """Resample ``v`` on cylindrical grids about z-parallel axes.

    Returns samples (n_axes, n_r, n_z, n_phi) and ring radii (n_r,). Outside the box: 0.
    """
    n_r = max(2, int(np.ceil(radius_px)))
    radii = (np.arange(n_r) + 0.5) * (radius_px / n_r)
    phi = 2.0 * np.pi * np.arange(_N_PHI) / _N_PHI
    dx = radii[:, None] * np.cos(phi)[None, :]
    dy = radii[:, None] * np.sin(phi)[None, :]
    ax = np.asarray(axes_xy, np.float64).reshape(-1, 2)
    n_a, n_z = len(ax), len(z_index)
    x = ax[:, 0, None, None, None] + dx[None, :, None, :]
    y = ax[:, 1, None, None, None] + dy[None, :, None, :]
    z = np.asarray(z_index, np.float64)[None, None, :, None]
    shape = (n_a, n_r, n_z, _N_PHI)
    coords = np.stack(
        [np.broadcast_to(z, shape), np.broadcast_to(y, shape), np.broadcast_to(x, shape)]
    )
    out = scipy.ndimage.map_coordinates(
        v, coords.reshape(3, -1), order=1, mode="constant", cval=0.0
    )
    return out.reshape(shape), radii


def _angular_powers(samples: np.ndarray, radii: np.ndarray, order: int):
    """Per-z C_n-symmetric and other angular power (m > 0), ring-area weighted: (n_axes, n_z) each."""
    f = np.fft.rfft(samples, axis=-1)
    power = np.abs(f) ** 2
    m = np.arange(f.shape[-1])
    weight = np.where((m == 0) | (m == _N_PHI // 2), 1.0, 2.0) * (m > 0)
    sym = (m % order == 0) & (m > 0)
    p = power * radii[None, :, None, None]
    p_sym = (p * (weight * sym)).sum(axis=(1, 3))
    p_other = (p * (weight * ~sym)).sum(axis=(1, 3))
    return p_sym, p_other


def cn_axis_score(
    v: np.ndarray, axes_xy: np.ndarray, radius_px: float, z_index: np.ndarray, order: int
):
    """C_n self-similarity of ``v`` about z-parallel axes through ``axes_xy`` (0-based x, y).

    Mean normalised correlation of the map (angular mode 0 removed) with its copies rotated by
    ``k 360 / order`` degrees, k = 1..order-1, within a cylinder of ``radius_px`` over the
    slices ``z_index``. Returns (n_axes,) scores in [-1 / (order - 1), 1].
    """
    out = np.empty(len(axes_xy))
    chunk = max(1, 400_000 // (int(np.ceil(radius_px)) * len(z_index) * _N_PHI))
    for i in range(0, len(axes_xy), chunk):
        samples, radii = _cylinder_samples(v, axes_xy[i : i + chunk], radius_px, z_index)
        p_sym, p_other = _angular_powers(samples, radii, order)
        s, o = p_sym.sum(axis=1), p_other.sum(axis=1)
        out[i : i + chunk] = (s - o / (order - 1)) / np.maximum(s + o, 1e-300)
    return out


def _disk_grid(centre_xy, radius: float, step: float) -> np.ndarray:
    k = int(np.floor(radius / step))
    g = np.arange(-k, k + 1) * step
    gx, gy = np.meshgrid(g, g, indexing="xy")
    keep = gx**2 + gy**2 <= radius**2 + 1e-9
    return np.stack([gx[keep], gy[keep]], axis=1) + np.asarray(centre_xy, np.float64)


def _layer_z(p_sym: np.ndarray, p_other: np.ndarray) -> float:
    """z index of the protein layer from per-slice C_n and other angular powers (n_z,) each.

    The C_n power summed over the candidate axes (smoothed over 2 px) peaks in the protein
    layer: the membrane puts its power into low orders. Slices within 3 px of the box faces are
    skipped (the pre-filter leaves more noise there).
    """
    prof = scipy.ndimage.gaussian_filter1d(p_sym, 2.0)
    prof[:3] = prof[-3:] = -np.inf
    return float(np.argmax(prof))


def _nearest_axis(v: np.ndarray, spacing_px: float, order: int, search_px: float):
    """Coarse search (1 px grid) of the C_n axis nearest the box centre.

    The protein layer is located first as the z of maximal C_n-symmetric angular power summed
    over all candidate axes (the membrane band carries almost none), and axes are scored on the
    slices within ``+- spacing / 2`` of it only, so that the strong low-order angular modulation
    of a tilted, curved membrane does not dilute the scores. Among the local score maxima
    above ``median + 0.5 (max - median)`` of the search disk, the one nearest the centre wins.

    Returns (x, y) 0-based and the layer's z (0-based index).
    """
    n = v.shape[0]
    c = n // 2
    k = int(np.floor(search_px))
    g = np.arange(-k, k + 1)
    gx, gy = np.meshgrid(g, g, indexing="xy")
    axes = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float64) + c
    z_all = np.arange(n, dtype=np.float64)
    p_sym = np.empty((len(axes), n))
    p_other = np.empty((len(axes), n))
    radius = 0.5 * spacing_px
    chunk = max(1, 400_000 // (int(np.ceil(radius)) * n * _N_PHI))
    for i in range(0, len(axes), chunk):
        samples, radii = _cylinder_samples(v, axes[i : i + chunk], radius, z_all)
        p_sym[i : i + chunk], p_other[i : i + chunk] = _angular_powers(samples, radii, order)
    z_layer = _layer_z(p_sym.sum(axis=0), p_other.sum(axis=0))
    lo, hi = max(0, int(round(z_layer - radius))), min(n, int(round(z_layer + radius)) + 1)
    s, o = p_sym[:, lo:hi].sum(axis=1), p_other[:, lo:hi].sum(axis=1)
    score = ((s - o / (order - 1)) / np.maximum(s + o, 1e-300)).reshape(gx.shape)
    inside = gx**2 + gy**2 <= search_px**2
    score_in = np.where(inside, score, -np.inf)
    peaks = (
        score_in == scipy.ndimage.maximum_filter(score_in, size=3, mode="constant", cval=-np.inf)
    ) & inside
    best, typical = score_in.max(), float(np.median(score[inside]))
    peaks &= score_in >= typical + 0.5 * (best - typical)
    iy, ix = np.nonzero(peaks)
    j = int(np.argmin(gx[iy, ix] ** 2 + gy[iy, ix] ** 2))
    return np.array([c + gx[iy[j], ix[j]], c + gy[iy[j], ix[j]]], np.float64), z_layer


def _density_centroid(profile: np.ndarray, z_centre: float, half: float) -> float | None:
    """Centre of mass above a linear baseline of ``profile`` within ``z_centre +- half``.

    None when the window is too short or the baseline-corrected density is not mostly
    positive (less than 60 % of its absolute sum), i.e. no protein layer is seen there.
    """
    n = len(profile)
    lo, hi = max(0, int(np.floor(z_centre - half))), min(n - 1, int(np.ceil(z_centre + half)))
    if hi - lo < 4:
        return None
    zs, p = np.arange(lo, hi + 1, dtype=np.float64), profile[lo : hi + 1]
    dev = p - np.interp(zs, [zs[0], zs[-1]], [p[:2].mean(), p[-2:].mean()])
    pos = np.clip(dev, 0.0, None)
    if pos.sum() <= 0 or pos.sum() < 0.6 * np.abs(dev).sum():
        return None
    return float((pos * zs).sum() / pos.sum())


def _layer_height(
    v: np.ndarray, axis_xy: np.ndarray, spacing_px: float, order: int, z_start: float
) -> float:
    """Protein-layer centre (0-based z index) along a z-parallel axis, starting near ``z_start``.

    1. ``z_mod``: the centroid of the C_n-symmetric angular power along the axis (smoothed,
       within ``+- spacing / 2`` of ``z_start``, below-half-maximum values dropped): where the
       unit's n-fold modulated density lies; unaffected by flat or missing low-``k_xy``
       components.
    2. The centre of mass of the cylinder-averaged density (radius ``spacing / 2``) above a
       linear baseline through the ends of a window of ``+- spacing / 2``, the window re-centred
       on the result (5 iterations, kept within ``spacing / 3`` of ``z_mod``). It averages far
       more voxels than step 1 and is returned unless some window shows no mostly-positive
       layer (e.g. a map whose layer-mean profile is lost to the missing wedge): then ``z_mod``.
    """
    n = v.shape[0]
    z_all = np.arange(n, dtype=np.float64)
    samples, radii = _cylinder_samples(v, axis_xy[None, :], 0.5 * spacing_px, z_all)
    p_sym, _ = _angular_powers(samples, radii, order)
    modulation = scipy.ndimage.gaussian_filter1d(p_sym[0], 1.0)
    half = 0.5 * spacing_px
    near = np.abs(z_all - z_start) <= half
    w = np.where(near, modulation, 0.0)
    w = np.where(w >= 0.5 * w.max(), w, 0.0)
    z_mod = float((w * z_all).sum() / w.sum()) if w.sum() > 0 else float(z_start)
    # cylinder-averaged density per z (area-weighted mean over rings and angles)
    profile = (samples[0].mean(axis=-1) * radii[:, None]).sum(axis=0) / radii.sum()
    z = z_mod
    for _ in range(5):
        z_new = _density_centroid(profile, z, half)
        if z_new is None:
            return z_mod
        z_new = float(np.clip(z_new, z_mod - spacing_px / 3.0, z_mod + spacing_px / 3.0))
        if abs(z_new - z) < 1e-3:
            return z_new
        z = z_new
    return z


def _unit_centre(v: np.ndarray, spacing_px: float, order: int, search_px: float) -> np.ndarray:
    """0-based (x, y, z) of the C_n unit nearest the box centre in a prepared map."""
    n = v.shape[0]
    search = min(search_px, n // 2 - 1.0)
    xy, z_layer = _nearest_axis(v, spacing_px, order, search)
    z = _layer_height(v, xy, spacing_px, order, z_layer)
    half = 0.5 * spacing_px
    z_layer = np.arange(
        max(0, int(round(z - half))), min(n, int(round(z + half)) + 1), dtype=np.float64
    )
    for step, reach in ((0.5, 1.5), (0.1, 0.5)):
        grid = _disk_grid(xy, reach, step)
        xy = grid[int(np.argmax(cn_axis_score(v, grid, half, z_layer, order)))]
    z = _layer_height(v, xy, spacing_px, order, z)
    return np.array([xy[0], xy[1], z])


def propose_reference_center(
    average,
    pixel_size_angstrom: float,
    lattice_spacing_angstrom: float = 75.0,
    symmetry_order: int = 6,
    protein_sign: float = -1.0,
) -> np.ndarray:
    """Propose the centre of the lattice unit nearest the box centre of a C1 average (step 3B).

    Parameters
    ----------
    average : array_like
        (n, n, n) map (z, y, x) of a lattice patch, particle z = VLP outward normal, e.g. the
        result of the step-3 reference project.
    pixel_size_angstrom : float
        Pixel size of the map, Å.
    lattice_spacing_angstrom : float
        Expected centre-to-centre lattice spacing, Å.
    symmetry_order : int
        Rotational symmetry of a unit about its axis (6 for CA-SP1 hexamers).
    protein_sign : float
        -1 when protein is dark (tomogram contrast, default), +1 when bright.

    Returns
    -------
    np.ndarray
        (1, 3) 1-based pixel coordinates (x, y, z) of the unit centre (axis position and the
        centre of mass of the protein layer along it), for ``reference_center.cmm``.

    Raises
    ------
    InputError
        Non-cubic or non-finite map, bad pixel size, spacing not fitting in the box.
    """
    vol = check_map(average, pixel_size_angstrom, lattice_spacing_angstrom)
    order, sign = _check_order_sign(symmetry_order, protein_sign)
    spacing_px = float(lattice_spacing_angstrom) / float(pixel_size_angstrom)
    v = prepare_map(vol, spacing_px, sign)
    centre = _unit_centre(v, spacing_px, order, search_px=0.8 * spacing_px)
    return (centre + 1.0)[None, :]


def _cross_correlate(
    f_image: np.ndarray, kernel: np.ndarray, size: int, n: int, h: int
) -> np.ndarray:
    """``sum_q K(q) A(t + q - h)`` for t in the n^3 box, from ``rfftn(A)`` zero-padded to ``size``."""
    fk = scipy.fft.rfftn(kernel, s=(size,) * 3, workers=-1)
    full = scipy.fft.irfftn(f_image * np.conj(fk), s=(size,) * 3, workers=-1)
    return np.roll(full, h, axis=(0, 1, 2))[:n, :n, :n]


def masked_ncc(volume: np.ndarray, templates, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Masked normalised cross-correlation of templates over a volume, no wrap-around.

    Padfield's masked NCC with the box as the image's validity region: for a template centred
    at voxel t (index ``t`` of the map; the template's centre is its index ``h = (m - 1) / 2``),
    the Pearson correlation of template and map over the mask voxels that fall inside the box.

    Parameters
    ----------
    volume : np.ndarray
        (n, n, n) map (z, y, x).
    templates : sequence of np.ndarray
        (m, m, m) templates, m odd, same shape as ``mask``.
    mask : np.ndarray
        (m, m, m) non-negative weights (the region compared), shared by all templates.

    Returns
    -------
    ncc : np.ndarray
        (n, n, n) maximum NCC over the templates at each centre position (0 where less than
        half of the mask weight falls inside the box).
    best : np.ndarray
        (n, n, n) int index of the template giving the maximum.
    """
    vol = np.asarray(volume, np.float64)
    n = vol.shape[0]
    msk = np.asarray(mask, np.float64)
    m = msk.shape[0]
    h = (m - 1) // 2
    size = scipy.fft.next_fast_len(n + m)
    valid = np.ones_like(vol)
    f_v = scipy.fft.rfftn(valid, s=(size,) * 3, workers=-1)
    f_i = scipy.fft.rfftn(vol, s=(size,) * 3, workers=-1)
    f_i2 = scipy.fft.rfftn(vol**2, s=(size,) * 3, workers=-1)
    overlap = _cross_correlate(f_v, msk, size, n, h)
    ok = overlap > 0.5 * msk.sum()
    safe = np.where(ok, overlap, 1.0)
    sum_i = _cross_correlate(f_i, msk, size, n, h)
    var_i = _cross_correlate(f_i2, msk, size, n, h) - sum_i**2 / safe
    best_ncc = np.full(vol.shape, -np.inf)
    best_idx = np.zeros(vol.shape, dtype=np.int64)
    for k, template in enumerate(templates):
        t = np.asarray(template, np.float64)
        mt = msk * t
        sum_t = _cross_correlate(f_v, mt, size, n, h)
        var_t = _cross_correlate(f_v, mt * t, size, n, h) - sum_t**2 / safe
        num = _cross_correlate(f_i, mt, size, n, h) - sum_i * sum_t / safe
        den = np.sqrt(np.clip(var_i, 0.0, None) * np.clip(var_t, 0.0, None))
        good = ok & (den > 1e-12 * max(float(den.max()), 1e-300))
        ncc = np.where(good, num / np.where(good, den, 1.0), 0.0)
        better = ncc > best_ncc
        best_ncc[better] = ncc[better]
        best_idx[better] = k
    return best_ncc, best_idx


def _subpixel(score: np.ndarray, idx) -> np.ndarray:
    """Per-axis parabolic refinement of a peak at integer (z, y, x) index; returns (x, y, z)."""
    pos = np.array(idx, np.float64)
    for a in range(3):
        if 0 < idx[a] < score.shape[a] - 1:
            lo, hi = list(idx), list(idx)
            lo[a] -= 1
            hi[a] += 1
            left, mid, right = score[tuple(lo)], score[tuple(idx)], score[tuple(hi)]
            denom = left - 2.0 * mid + right
            if denom < 0:
                pos[a] += float(np.clip(0.5 * (left - right) / denom, -0.5, 0.5))
    return pos[::-1]


def pick_peaks(
    score: np.ndarray,
    min_distance_px: float,
    threshold: float,
    edge_margin_px: float,
    max_peaks: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy non-maximum suppression of a 3-D score map.

    Parameters
    ----------
    score : np.ndarray
        (n, n, n) score (z, y, x).
    min_distance_px : float
        Minimum distance between kept peaks, pixels.
    threshold : float
        Minimum score of a kept peak.
    edge_margin_px : float
        Kept peaks lie at least this far inside the box (0-based index in
        ``[margin, n - 1 - margin]`` on every axis).
    max_peaks : int, optional
        Keep at most this many (highest first).

    Returns
    -------
    xyz : np.ndarray
        (k, 3) 0-based subpixel (x, y, z), highest score first.
    scores : np.ndarray
        (k,) their scores.
    """
    local = score == scipy.ndimage.maximum_filter(score, size=3, mode="nearest")
    local &= score >= threshold
    idx = np.argwhere(local)
    vals = score[local]
    order = np.argsort(-vals, kind="stable")
    n = np.array(score.shape)
    kept_xyz: list[np.ndarray] = []
    kept_val: list[float] = []
    for j in order:
        p = _subpixel(score, tuple(idx[j]))
        if np.any(p < edge_margin_px) or np.any(p > n[::-1] - 1 - edge_margin_px):
            continue
        if kept_xyz and np.min(np.linalg.norm(np.array(kept_xyz) - p, axis=1)) < min_distance_px:
            continue
        kept_xyz.append(p)
        kept_val.append(float(vals[j]))
        if max_peaks is not None and len(kept_xyz) >= max_peaks:
            break
    return np.array(kept_xyz, np.float64).reshape(-1, 3), np.array(kept_val)


def lattice_connected(xyz: np.ndarray, start: int, spacing_px: float) -> np.ndarray:
    """Points reachable from ``xyz[start]`` by lattice steps within the layer.

    A step joins two points at a distance in ``STEP_RANGE`` times the spacing whose height
    difference is at most ``MAX_STEP_SLOPE`` times their in-plane distance, so peaks in other
    layers (membrane, lumen) or off the lattice are not reached.

    Parameters
    ----------
    xyz : np.ndarray
        (k, 3) positions (x, y, z), pixels.
    start : int
        Index of the seed point.
    spacing_px : float
        Lattice spacing, pixels.

    Returns
    -------
    np.ndarray
        (k,) bool, True for the connected points (the seed included).
    """
    pts = np.asarray(xyz, np.float64).reshape(-1, 3)
    d = pts[None, :, :] - pts[:, None, :]
    dist = np.linalg.norm(d, axis=2)
    d_xy = np.linalg.norm(d[..., :2], axis=2)
    lo, hi = STEP_RANGE
    link = (
        (dist >= lo * spacing_px)
        & (dist <= hi * spacing_px)
        & (np.abs(d[..., 2]) <= MAX_STEP_SLOPE * d_xy)
    )
    reached = np.zeros(len(pts), bool)
    reached[start] = True
    frontier = [start]
    while frontier:
        new = np.any(link[frontier], axis=0) & ~reached
        reached |= new
        frontier = list(np.nonzero(new)[0])
    return reached


def ball_mask(radius_px: float) -> np.ndarray:
    """Binary ball of ``radius_px`` in an odd cube of side ``2 ceil(radius) + 1``."""
    h = int(np.ceil(radius_px))
    g = np.arange(-h, h + 1)
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    return (x**2 + y**2 + z**2 <= radius_px**2).astype(np.float64)


def propose_unit_centres(
    average,
    pixel_size_angstrom: float,
    lattice_spacing_angstrom: float = 75.0,
    symmetry_order: int = 6,
    protein_sign: float = -1.0,
    max_units: int | None = None,
    edge_margin_px: float | None = None,
    min_score_fraction: float = MIN_SCORE_FRACTION,
) -> np.ndarray:
    """Propose the centres of all lattice units in a C_n "average of averages" (step 5B).

    Parameters
    ----------
    average : array_like
        (n, n, n) map (z, y, x) with a unit at (or near) the box centre, its axis along z,
        e.g. the step-5A average of the tomogram averages.
    pixel_size_angstrom : float
        Pixel size of the map, Å.
    lattice_spacing_angstrom : float
        Expected centre-to-centre lattice spacing, Å.
    symmetry_order : int
        Rotational symmetry of a unit about its axis (6 for CA-SP1 hexamers).
    protein_sign : float
        -1 when protein is dark (tomogram contrast, default), +1 when bright.
    max_units : int, optional
        Return at most this many units (the central one and the nearest others).
    edge_margin_px : float, optional
        Minimum distance of a unit centre from the box edge on every axis, pixels
        (default ``spacing / 3``).
    min_score_fraction : float
        Minimum CC score of a unit relative to the central unit's (default 0.65).

    Returns
    -------
    np.ndarray
        (k, 3) 1-based pixel coordinates (x, y, z): the central unit first (the C_n axis
        nearest the box centre, height = protein-layer centre), then the others by distance
        from it, for ``particle_centers.cmm``. Only units linked to the central one through
        a chain of in-layer lattice steps are kept (:func:`lattice_connected`).

    Raises
    ------
    InputError
        Non-cubic or non-finite map, bad pixel size, spacing not fitting in the box, bad
        ``max_units``.
    """
    vol = check_map(average, pixel_size_angstrom, lattice_spacing_angstrom)
    order, sign = _check_order_sign(symmetry_order, protein_sign)
    if max_units is not None and int(max_units) < 1:
        raise InputError("max_units", f"must be >= 1, got {max_units}")
    spacing_px = float(lattice_spacing_angstrom) / float(pixel_size_angstrom)
    margin = EDGE_MARGIN_FRACTION * spacing_px if edge_margin_px is None else float(edge_margin_px)
    v = prepare_map(vol, spacing_px, sign)
    centre = _unit_centre(v, spacing_px, order, search_px=0.8 * spacing_px)
    mask = ball_mask(0.5 * spacing_px)
    h = (mask.shape[0] - 1) // 2
    ci = np.round(centre).astype(int)
    padded = np.pad(v, h, mode="constant")
    template = padded[
        ci[2] : ci[2] + 2 * h + 1, ci[1] : ci[1] + 2 * h + 1, ci[0] : ci[0] + 2 * h + 1
    ]
    score, _ = masked_ncc(v, [template], mask)
    central_score = float(score[ci[2], ci[1], ci[0]])
    xyz, _ = pick_peaks(
        score, NMS_FRACTION * spacing_px, min_score_fraction * central_score, margin
    )
    xyz = np.vstack([centre[None, :], xyz + (centre - ci)])  # template cut at the rounded centre
    xyz = xyz[np.r_[True, np.linalg.norm(xyz[1:] - centre, axis=1) >= 0.5 * spacing_px]]
    xyz = xyz[lattice_connected(xyz, 0, spacing_px)]
    out = np.vstack(
        [xyz[:1], xyz[1:][np.argsort(np.linalg.norm(xyz[1:] - centre, axis=1), kind="stable")]]
    )
    if max_units is not None:
        out = out[: int(max_units)]
    return out + 1.0
