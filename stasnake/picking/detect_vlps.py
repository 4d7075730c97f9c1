"""Autopilot VLP detection: propose dipoles (centre + radius) from a binned tomogram.

Method: matched filtering with thin spherical shells over a range of radii.

* The tomogram (protein dark, as WBP gives it) is inverted, its mean removed
  and scaled to unit standard deviation.
* For every radius ``r`` the template is a Gaussian-profile shell built in
  Fourier space, ``T_r(k) = j0(2 pi |k| r) exp(-2 pi^2 sigma^2 |k|^2)``
  (``j0(x) = sin x / x``, the transform of a thin sphere), with ``T_r(0) = 0``
  (zero mean), multiplied by the missing-wedge mask of the tomogram (single
  axis tilt about y, :func:`stasnake.sta.wedge.measured_in_tomogram`) and
  normalised to unit L2 norm so that scores of different radii compare (white
  noise gives a unit-variance score at every radius).
* The score map is the maximum over radii of the correlation; its best radius
  is kept per voxel. Peaks: local maxima in a cube of side ``r_min``, above a
  robust z-score threshold (``(score - median) / (1.4826 MAD)`` over the map),
  accepted greedily by score unless their sphere overlaps a stronger one
  (centre distance below ``overlap * (r_i + r_j)``).
* Centres are refined to sub-voxel precision by a parabola through the score
  map along each axis; radii by a parabola through the scores at the peak of
  the neighbouring radii.

Positions are (x, y, z), 1-based pixels of the tomogram passed in (Dynamo
convention); convert with :func:`detections_to_dipoles` to full-size dipoles.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.fft
from scipy import ndimage

from stasnake.errors import InputError
from stasnake.picking.dipoles import (
    CENTER_COLUMNS,
    SURFACE_COLUMNS,
    binned_to_full,
    dipoles_from_spheres,
    full_to_binned,
)
from stasnake.sta.wedge import measured_in_tomogram

DETECTION_COLUMNS = ("x", "y", "z", "radius_px", "score")


def _frequency_grid(shape_zyx) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nz, ny, nx = shape_zyx
    kz = scipy.fft.fftfreq(nz)[:, None, None]
    ky = scipy.fft.fftfreq(ny)[None, :, None]
    kx = scipy.fft.rfftfreq(nx)[None, None, :]
    return kx, ky, kz


def _rfft_weights(shape_zyx) -> np.ndarray:
    """Multiplicity of each rfftn coefficient in the full spectrum (1 or 2), along x."""
    nx = shape_zyx[2]
    w = np.full(nx // 2 + 1, 2.0)
    w[0] = 1.0
    if nx % 2 == 0:
        w[-1] = 1.0
    return w[None, None, :]


def shell_template_ft(
    shape_zyx, radius_px: float, sigma_px: float, wedge=None, bilayer_separation_px: float = 0.0
) -> np.ndarray:
    """Unit-norm, zero-mean spherical-shell template in rfftn layout (real, centred at the origin).

    Parameters
    ----------
    shape_zyx : tuple of int
        Volume shape (nz, ny, nx).
    radius_px : float
        Shell radius in pixels.
    sigma_px : float
        Width of the shell profile in pixels: the radial profile is the
        Mexican hat ``-d^2/dr^2`` of a Gaussian of this sigma (zero mean, so
        slow density variations score zero).
    wedge : np.ndarray, optional
        Boolean (or weight) mask in the same rfftn layout, e.g. the measured region.
    bilayer_separation_px : float
        0: one shell at ``radius_px``; > 0: two shells (leaflets) at
        ``radius_px -+ separation / 2``, weighted by their area.

    Returns
    -------
    np.ndarray
        float64 array of shape (nz, ny, nx // 2 + 1).
    """
    kx, ky, kz = _frequency_grid(shape_zyx)
    k = np.sqrt(kx * kx + ky * ky + kz * kz)
    x2 = 2.0 * (np.pi * sigma_px * k) ** 2
    half = 0.5 * float(bilayer_separation_px)
    shells = [radius_px] if half == 0 else [radius_px - half, radius_px + half]
    t = sum(a * a * np.sinc(2.0 * a * k) for a in shells) * x2 * np.exp(-x2)
    if wedge is not None:
        t = t * wedge
    t[0, 0, 0] = 0.0
    norm2 = float(np.sum(_rfft_weights(shape_zyx) * t * t)) / float(np.prod(shape_zyx))
    return t / np.sqrt(norm2)


def _best_shell_scores(
    v: np.ndarray, radii, shell_sigma_px: float, bilayer_separation_px: float, tilt_range_deg,
    workers: int, region: np.ndarray | None = None, dtype=np.float32,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:  # fmt: skip
    """Shell-match a prepared volume (protein bright, zero mean) at every radius.

    Returns the best score over ``radii`` at every voxel (``-inf`` outside ``region``), the
    index of its radius, the volume's ``rfftn`` and the wedge mask (None without tilt range),
    the last two for the radius refinement.
    """
    shape = v.shape
    vft = scipy.fft.rfftn(v, workers=workers)
    wedge = None
    if tilt_range_deg is not None:
        wedge = measured_in_tomogram(*_frequency_grid(shape), tilt_range_deg).astype(np.float64)
    best = np.full(shape, -np.inf, dtype=dtype)
    best_index = np.zeros(shape, dtype=np.int16)
    for i, r in enumerate(radii):
        t = shell_template_ft(shape, r, shell_sigma_px, wedge, bilayer_separation_px)
        # the template is centred at the origin: the correlation peaks at the sphere's centre
        score = scipy.fft.irfftn(vft * t, s=shape, workers=workers).astype(dtype)
        better = score > best
        if region is not None:
            better &= region
        best[better] = score[better]
        best_index[better] = i
    return best, best_index, vft, wedge


def _parabola_offset(fm: float, f0: float, fp: float) -> float:
    denom = fm - 2.0 * f0 + fp
    if denom >= 0:
        return 0.0
    return float(np.clip(0.5 * (fm - fp) / denom, -0.5, 0.5))


def detect_vlps(
    tomogram: np.ndarray,
    radius_range_px: tuple[float, float],
    radius_step_px: float = 1.0,
    shell_sigma_px: float = 1.0,
    bilayer_separation_px: float = 0.0,
    tilt_range_deg: tuple[float, float] | None = (-60.0, 60.0),
    min_zscore: float = 12.0,
    overlap: float = 0.8,
    max_vlps: int | None = None,
    protein_dark: bool = True,
    workers: int | None = None,
) -> pd.DataFrame:
    """Find spherical VLPs in a (binned) tomogram by shell template matching.

    Parameters
    ----------
    tomogram : np.ndarray
        (z, y, x) volume, typically binned so that VLP radii are 20-60 px.
    radius_range_px : tuple of float
        (min, max) membrane radius to search, pixels of ``tomogram``.
    radius_step_px : float
        Radius sampling step, pixels.
    shell_sigma_px : float
        Gaussian width of the template shell, pixels (about half the bilayer
        thickness or one pixel, whichever is larger).
    bilayer_separation_px : float
        Distance between the two leaflets of the membrane, pixels (about
        38-40 Å); 0 matches a single shell, which locks on the leaflet with the
        best contrast (for the synthetic VLPs the outer one, half a separation
        too large).
    tilt_range_deg : tuple of float or None
        Tilt range of the tilt series (missing wedge about y); None: no wedge.
    min_zscore : float
        Peaks need a robust z-score of at least this (see module docstring).
    overlap : float
        Two detections are the same VLP when their centres are closer than
        ``overlap * (r_i + r_j)``.
    max_vlps : int, optional
        Keep at most this many (the best scores).
    protein_dark : bool
        True for tomograms where density is dark (WBP of raw images): inverted first.
    workers : int, optional
        scipy.fft threads (default: all CPUs).

    Returns
    -------
    pd.DataFrame
        One row per detection, best first: ``x, y, z`` (1-based pixels of
        ``tomogram``), ``radius_px`` (pixels of ``tomogram``), ``score``
        (robust z-score of the peak).
    """
    vol = np.asarray(tomogram, dtype=np.float32)
    if vol.ndim != 3:
        raise ValueError(f"tomogram must be 3-D (z, y, x), got shape {vol.shape}")
    r_min, r_max = (float(v) for v in radius_range_px)
    if not 0 < r_min <= r_max:
        raise ValueError(f"radius_range_px must be 0 < min <= max, got {radius_range_px}")
    workers = workers or -1
    shape = vol.shape
    v = vol - vol.mean()
    v /= v.std() or 1.0
    if protein_dark:
        v = -v
    radii = np.arange(r_min, r_max + 0.5 * radius_step_px, radius_step_px)
    best, best_index, vft, wedge = _best_shell_scores(v, radii, shell_sigma_px, bilayer_separation_px,
                                                      tilt_range_deg, workers)  # fmt: skip
    median = float(np.median(best))
    mad = 1.4826 * float(np.median(np.abs(best - median))) or 1.0
    z = (best - median) / mad
    size = max(3, int(r_min) | 1)
    peaks = (z == ndimage.maximum_filter(z, size=size, mode="nearest")) & (z >= min_zscore)
    idx = np.argwhere(peaks)
    order = np.argsort(-z[peaks], kind="stable")
    idx = idx[order]
    accepted: list[tuple[np.ndarray, float, float, tuple]] = []
    for iz, iy, ix in idx:
        r = float(radii[best_index[iz, iy, ix]])
        c = np.array([ix, iy, iz], dtype=np.float64)
        if any(np.linalg.norm(c - c2) < overlap * (r + r2) for c2, r2, _, _ in accepted):
            continue
        accepted.append((c, r, float(z[iz, iy, ix]), (iz, iy, ix)))
        if max_vlps is not None and len(accepted) >= max_vlps:
            break
    rows = [(_subvoxel_centre(best, p), r, s, p) for _, r, s, p in accepted]
    radii_refined = _refine_radii(vft, shape, [p for _, _, _, p in rows], [r for _, r, _, _ in rows],
                                  radius_step_px, shell_sigma_px, bilayer_separation_px, wedge)  # fmt: skip
    out = pd.DataFrame(
        {
            "x": [c[0] + 1.0 for c, _, _, _ in rows],
            "y": [c[1] + 1.0 for c, _, _, _ in rows],
            "z": [c[2] + 1.0 for c, _, _, _ in rows],
            "radius_px": radii_refined,
            "score": [s for _, _, s, _ in rows],
        },
        columns=list(DETECTION_COLUMNS),
    )
    return out


def _subvoxel_centre(score: np.ndarray, peak_zyx) -> np.ndarray:
    """0-based (x, y, z) of a peak refined by a parabola through its neighbours on each axis."""
    peak = np.asarray(peak_zyx)
    out = peak[::-1].astype(np.float64)
    for axis in range(3):
        if 0 < peak[axis] < score.shape[axis] - 1:
            vals = []
            for d in (-1, 0, 1):
                p = peak.copy()
                p[axis] += d
                vals.append(float(score[tuple(p)]))
            out[2 - axis] += _parabola_offset(*vals)
    return out


def _refine_radii(vft, shape, peaks, radii, step, sigma, separation, wedge) -> list[float]:
    """Parabolic radius refinement from the scores at each peak for ``r - step, r, r + step``."""
    out = []
    for (iz, iy, ix), r in zip(peaks, radii, strict=True):
        vals = []
        for rr in (r - step, r, r + step):
            if rr <= 0:
                vals.append(-np.inf)
                continue
            t = shell_template_ft(shape, rr, sigma, wedge, separation)
            # score at one voxel: inverse transform evaluated at (iz, iy, ix) only
            kx, ky, kz = _frequency_grid(shape)
            phase = np.exp(2j * np.pi * (kx * ix + ky * iy + kz * iz))
            total = np.sum(_rfft_weights(shape) * (vft * t * phase).real) / float(np.prod(shape))
            vals.append(float(total))
        out.append(r + step * _parabola_offset(*vals) if np.all(np.isfinite(vals)) else r)
    return out


def detections_to_dipoles(detections: pd.DataFrame, binning: int) -> pd.DataFrame:
    """Full-size dipoles from detections in a tomogram binned by ``binning``.

    Parameters
    ----------
    detections : pd.DataFrame
        Output of :func:`detect_vlps` (1-based binned pixels).
    binning : int
        Binning of the tomogram the detections were made on.

    Returns
    -------
    pd.DataFrame
        :func:`stasnake.picking.dipoles.dipoles_from_spheres` columns in full-size
        1-based pixels plus ``score``; write with
        :func:`stasnake.picking.dipoles.write_dipoles`.
    """
    centres = binned_to_full(detections[["x", "y", "z"]].to_numpy(dtype=np.float64), binning)
    out = dipoles_from_spheres(
        centres, detections["radius_px"].to_numpy(dtype=np.float64) * binning
    )
    out["score"] = detections["score"].to_numpy()
    return out


def refine_sphere(
    tomogram: np.ndarray,
    centre_xyz: Sequence[float],
    radius_px: float,
    search_px: float,
    radius_search_px: float | None = None,
    radius_step_px: float = 1.0,
    shell_sigma_px: float = 1.0,
    bilayer_separation_px: float = 0.0,
    tilt_range_deg: tuple[float, float] | None = (-60.0, 60.0),
    protein_dark: bool = True,
    workers: int | None = None,
) -> dict:
    """Snap one roughly clicked VLP (centre and radius) onto its membrane by shell matching.

    The matched filter of :func:`detect_vlps`, run on a cube around the click: the best
    shell score over radii ``radius_px ± radius_search_px`` and centres within
    ``search_px`` of the click, refined to sub-voxel centre and radius by parabolas. The
    protocol clicks dipoles loosely and relies on the alignment to find the membrane; a radius
    off by 10 % puts every crop point of that VLP half a lattice spacing off the lattice, which
    the first alignment's z search does not always recover (measured on the demo, docs/protocol.md).

    Parameters
    ----------
    tomogram : np.ndarray
        (z, y, x) volume, the (binned) tomogram the click refers to.
    centre_xyz : sequence of float
        Clicked centre, 1-based (x, y, z) pixels of ``tomogram``.
    radius_px : float
        Clicked radius, pixels of ``tomogram``.
    search_px : float
        The centre may move up to this far from the click, pixels.
    radius_search_px : float, optional
        The radius may change up to this much (default ``search_px``), pixels.
    radius_step_px, shell_sigma_px, bilayer_separation_px, tilt_range_deg, protein_dark, workers
        As in :func:`detect_vlps` (pixels of ``tomogram``; tilt range in degrees).

    Returns
    -------
    dict
        ``x, y, z`` (1-based pixels of ``tomogram``), ``radius_px``, ``score`` (the shell
        correlation, unit-variance for white noise), ``moved_px`` (centre distance from the
        click) and ``at_limit`` (True when the best centre or radius lies on the edge of the
        search, i.e. the click may be further off than the search allows).
    """
    vol = np.asarray(tomogram, dtype=np.float32)
    if vol.ndim != 3:
        raise ValueError(f"tomogram must be 3-D (z, y, x), got shape {vol.shape}")
    centre = np.asarray(centre_xyz, dtype=np.float64) - 1.0  # 0-based x, y, z
    r0, search = float(radius_px), float(search_px)
    r_search = search if radius_search_px is None else float(radius_search_px)
    if r0 <= 0 or search < 0 or r_search < 0:
        raise ValueError(f"radius {radius_px} must be > 0 and searches >= 0 ({search_px}, {radius_search_px})")
    radii = np.arange(max(1.0, r0 - r_search), r0 + r_search + 0.5 * radius_step_px, radius_step_px)
    half = int(np.ceil(radii[-1] + search + 0.5 * bilayer_separation_px + 4 * shell_sigma_px + 2))
    n = 2 * half + 1
    # the cube around the click, normalised over its part inside the tomogram and zero outside
    origin = np.round(centre[::-1]).astype(int) - half  # (z, y, x) of the cube's first voxel
    lo = np.maximum(origin, 0)
    hi = np.minimum(origin + n, vol.shape)
    if np.any(hi <= lo):
        raise ValueError(f"the click at {np.round(centre + 1, 1).tolist()} lies outside the tomogram {vol.shape}")
    part = vol[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]].astype(np.float64)
    part = (part - part.mean()) / (part.std() or 1.0)
    cube = np.zeros((n, n, n))
    cube[tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, origin, strict=True))] = -part if protein_dark else part
    shape = cube.shape
    # scores at centres within the search ball around the click (cube coordinates)
    click = centre[::-1] - origin
    zz, yy, xx = np.ogrid[:n, :n, :n]
    inside = (zz - click[0]) ** 2 + (yy - click[1]) ** 2 + (xx - click[2]) ** 2 <= max(search, 0.5) ** 2
    best, best_index, vft, wedge = _best_shell_scores(cube, radii, shell_sigma_px, bilayer_separation_px,
                                                      tilt_range_deg, workers or -1, region=inside,
                                                      dtype=np.float64)  # fmt: skip
    peak = np.unravel_index(int(np.argmax(best)), shape)
    i = int(best_index[peak])
    xyz = _subvoxel_centre(np.where(np.isfinite(best), best, np.min(best[inside])), peak)
    radius = _refine_radii(vft, shape, [peak], [float(radii[i])], radius_step_px, shell_sigma_px,
                           bilayer_separation_px, wedge)[0] if 0 < i < len(radii) - 1 else float(radii[i])  # fmt: skip
    out_xyz = xyz + origin[::-1] + 1.0
    moved = float(np.linalg.norm(out_xyz - (centre + 1.0)))
    at_limit = (search >= 1.0 and np.linalg.norm(np.asarray(peak, float) - click) > search - 0.5) or (
        r_search > 0 and i in (0, len(radii) - 1))
    return {"x": float(out_xyz[0]), "y": float(out_xyz[1]), "z": float(out_xyz[2]), "radius_px": float(radius),
            "score": float(best[peak]), "moved_px": moved, "at_limit": bool(at_limit)}  # fmt: skip


def refine_dipoles(
    dipoles: pd.DataFrame,
    binned: np.ndarray,
    binning: int,
    search_fraction: float = 0.25,
    source: str = "dipoles",
    **shell_options,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every dipole snapped onto its membrane with :func:`refine_sphere` in the binned tomogram.

    Parameters
    ----------
    dipoles : pd.DataFrame
        :func:`stasnake.picking.dipoles.read_dipoles` output (full-size 1-based pixels).
    binned : np.ndarray
        (z, y, x) tomogram binned by ``binning`` (the one the dipoles were clicked in).
    binning : int
        Its binning factor.
    search_fraction : float
        Centre and radius may change by up to this fraction of the clicked radius.
    source : str
        The dipole file, for error messages.
    **shell_options
        ``bilayer_separation_px``, ``shell_sigma_px``, ``tilt_range_deg``, ... of
        :func:`refine_sphere`, in pixels of ``binned``.

    Raises
    ------
    InputError
        A VLP whose click lies outside the binned tomogram (the message names ``source`` and
        the VLP).

    Returns
    -------
    refined : pd.DataFrame
        ``dipoles`` with ``center_x/y/z``, ``radius_px`` and the surface point (same
        direction from the centre) refined, full-size pixels.
    report : pd.DataFrame
        Per VLP: clicked and refined centre and radius (full-size pixels), the move,
        ``score`` and ``at_limit``.
    """
    rows, centres, surfaces, radii = [], [], [], []
    for i, row in enumerate(dipoles.itertuples(index=False)):
        centre = np.array([getattr(row, c) for c in CENTER_COLUMNS], dtype=np.float64)
        surface = np.array([getattr(row, c) for c in SURFACE_COLUMNS], dtype=np.float64)
        r_binned = float(row.radius_px) / binning
        try:
            fit = refine_sphere(binned, full_to_binned(centre[None], binning)[0], r_binned,
                                search_px=search_fraction * r_binned, **shell_options)  # fmt: skip
        except ValueError as exc:
            raise InputError(source, f"VLP {getattr(row, 'vlp', i + 1)}: {exc}") from None
        new_centre = binned_to_full(np.array([[fit["x"], fit["y"], fit["z"]]]), binning)[0]
        new_radius = fit["radius_px"] * binning
        direction = (surface - centre) / np.linalg.norm(surface - centre)
        centres.append(new_centre)
        surfaces.append(new_centre + new_radius * direction)
        radii.append(new_radius)
        rows.append({
            "vlp": int(getattr(row, "vlp", i + 1)),
            **{f"clicked_{a}": centre[k] for k, a in enumerate("xyz")}, "clicked_radius_px": float(row.radius_px),
            **{f"refined_{a}": new_centre[k] for k, a in enumerate("xyz")}, "refined_radius_px": new_radius,
            "moved_px": float(np.linalg.norm(new_centre - centre)), "radius_change_px": new_radius - float(row.radius_px),
            "score": fit["score"], "at_limit": fit["at_limit"],
        })  # fmt: skip
    refined = dipoles.copy()
    refined[list(CENTER_COLUMNS)] = np.array(centres).reshape(-1, 3)
    refined[list(SURFACE_COLUMNS)] = np.array(surfaces).reshape(-1, 3)
    refined["radius_px"] = np.array(radii, dtype=np.float64)
    return refined, pd.DataFrame(rows)
