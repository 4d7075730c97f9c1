"""Gold-bead detection and tracking through a tilt series.

Detection: normalised cross-correlation (NCC) of the band-passed image with a
DARK bead template (gold is dark in raw images), on a copy binned so the bead is
about 6 px across, local maxima above a threshold, then subpixel refinement by
a parabolic fit of the NCC peak at full size.

Tracking: start from the beads detected in the tilt nearest 0°, walk outwards
tilt by tilt in both directions. For each new tilt the per-tilt shift is first
estimated by stretched cross-correlation with the previous tilt
(:func:`stasnake.tilt.align_xcorr.cross_correlation_shift`), then every bead's
position is predicted from its current 3-D estimate (X, Z fitted to its earlier
positions, giving the foreshortening perpendicular to the tilt axis), the
median offset of the predictions to their nearest detections corrects the
shift, and each bead takes its nearest unused detection within a radius.
Geometry as in :mod:`stasnake.tilt.align_model` (``x_raw = c + R(psi) (p_t(P) - D_t)``).
"""

from __future__ import annotations

import numpy as np
import scipy.signal
from scipy import ndimage
from scipy.spatial import cKDTree

from stasnake.errors import InputError
from stasnake.tilt.align_xcorr import bin_image, neighbour_shifts


def bead_template(diameter_px: float) -> np.ndarray:
    """Zero-mean, unit-norm template of a BRIGHT disc (match against the inverted image).

    Square of odd side ``~2 diameter``, disc edge softened by a 0.5 px Gaussian.
    """
    half = int(np.ceil(diameter_px)) | 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    r = np.hypot(xx, yy)
    disc = 0.5 * (1.0 - np.tanh((r - 0.5 * diameter_px) / 0.7))
    t = disc - disc.mean()
    return (t / np.linalg.norm(t)).astype(np.float64)


def normalised_cross_correlation(image: np.ndarray, template: np.ndarray) -> np.ndarray:
    """NCC in [-1, 1] of a zero-mean, unit-norm template at every pixel ('same' size, float64)."""
    img = np.asarray(image, dtype=np.float64)
    k = template.shape[0]
    corr = scipy.signal.fftconvolve(img, template[::-1, ::-1], mode="same")
    mean = ndimage.uniform_filter(img, k, mode="reflect")
    mean2 = ndimage.uniform_filter(img * img, k, mode="reflect")
    var = np.maximum(mean2 - mean * mean, 0.0) * k * k
    return corr / np.sqrt(var + 1e-12 * (var.max() + 1e-30))


def _prepare(image, diameter_px):
    """Inverted, high-passed image (beads bright)."""
    img = np.asarray(image, dtype=np.float64)
    return -(img - ndimage.gaussian_filter(img, 2.0 * diameter_px, mode="reflect"))


def _parabolic(c_m, c_0, c_p) -> float:
    den = c_m - 2 * c_0 + c_p
    return 0.0 if den >= 0 else float(np.clip(0.5 * (c_m - c_p) / den, -0.5, 0.5))


def detect_beads_with_scores(image: np.ndarray, bead_diameter_px: float, n_max: int | None = None,
                             threshold: float | None = None, border_px: float | None = None):  # fmt: skip
    """Like :func:`detect_beads`, also returning the NCC score of each bead.

    Returns
    -------
    positions : np.ndarray
        (n, 2) subpixel (x, y) = (column, row), best score first.
    scores : np.ndarray
        (n,) NCC peak values.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    d = float(bead_diameter_px)
    if not d > 0:
        raise ValueError(f"bead_diameter_px must be positive, got {bead_diameter_px}")
    b = max(1, int(d // 6))
    small = bin_image(image, b)
    ds = d / b
    ncc = normalised_cross_correlation(_prepare(small, ds), bead_template(ds))
    threshold = 0.3 if threshold is None else float(threshold)
    size = max(3, int(round(0.8 * ds)) | 1)
    peaks = (ncc == ndimage.maximum_filter(ncc, size=size, mode="constant", cval=-np.inf)) & (ncc > threshold)
    iy, ix = np.nonzero(peaks)
    score = ncc[iy, ix]
    border = 0.5 * d if border_px is None else float(border_px)
    x, y = (ix + 0.5) * b - 0.5, (iy + 0.5) * b - 0.5  # binned pixel centre in full-size pixels
    ny, nx = image.shape
    inside = (x >= border) & (x <= nx - 1 - border) & (y >= border) & (y <= ny - 1 - border)
    x, y, score = x[inside], y[inside], score[inside]
    order = np.argsort(-score, kind="stable")
    if n_max is not None:
        order = order[: int(n_max)]
    x, y, score = x[order], y[order], score[order]
    pos = np.column_stack([x, y]) if x.size else np.zeros((0, 2))
    pos, score = _refine(image, pos, score, d)
    ok = score >= 0.75 * threshold  # the full-size peak must confirm the binned one
    return pos[ok], score[ok]


def _refine(image, pos, score, d):
    """Subpixel positions by a parabolic fit of the full-size NCC peak in a small patch."""
    if len(pos) == 0:
        return pos, score
    tmpl = bead_template(d)
    half = tmpl.shape[0] // 2
    search = max(2, int(np.ceil(0.25 * d)))
    pad = half + search + 1
    ny, nx = image.shape
    out = pos.copy()
    out_score = score.copy()
    for i, (x, y) in enumerate(pos):
        cx, cy = int(round(x)), int(round(y))
        y0, y1, x0, x1 = cy - pad, cy + pad + 1, cx - pad, cx + pad + 1
        if y0 < 0 or x0 < 0 or y1 > ny or x1 > nx:
            continue  # near the edge: keep the binned estimate
        patch = -np.asarray(image[y0:y1, x0:x1], dtype=np.float64)  # NCC removes the local mean itself
        ncc = normalised_cross_correlation(patch, tmpl)
        core = ncc[pad - search : pad + search + 1, pad - search : pad + search + 1]
        j, k = np.unravel_index(int(np.argmax(core)), core.shape)
        py, px = pad - search + j, pad - search + k
        dy = _parabolic(ncc[py - 1, px], ncc[py, px], ncc[py + 1, px])
        dx = _parabolic(ncc[py, px - 1], ncc[py, px], ncc[py, px + 1])
        out[i] = (x0 + px + dx, y0 + py + dy)
        out_score[i] = ncc[py, px]
    return out, out_score


def detect_beads(image: np.ndarray, bead_diameter_px: float, n_max: int | None = None,
                 threshold: float | None = None) -> np.ndarray:  # fmt: skip
    """Find dark gold beads in a raw image.

    Parameters
    ----------
    image : np.ndarray
        (ny, nx) raw image (beads dark).
    bead_diameter_px : float
        Bead diameter in pixels (bead diameter in Å / pixel size).
    n_max : int, optional
        Keep at most this many, best NCC first.
    threshold : float, optional
        NCC threshold on the binned image (default 0.3; gold beads at usual
        doses score 0.4-0.6, background below 0.2); the full-size refined
        peak must reach 0.75 of it.

    Returns
    -------
    np.ndarray
        (n, 2) subpixel bead centres (x, y) = (column, row) in pixels, best first.
    """
    return detect_beads_with_scores(image, bead_diameter_px, n_max=n_max, threshold=threshold)[0]


def _match(pred: np.ndarray, det: np.ndarray, radius: float) -> np.ndarray:
    """Greedy unique nearest matching; index into det per prediction, -1 if none within radius."""
    out = np.full(len(pred), -1, dtype=np.int64)
    ok = np.isfinite(pred).all(axis=1)
    if len(det) == 0 or not ok.any():
        return out
    tree = cKDTree(det)
    idx_ok = np.flatnonzero(ok)
    dist, j = tree.query(pred[ok], k=min(4, len(det)), distance_upper_bound=radius)
    dist, j = dist.reshape(len(idx_ok), -1), j.reshape(len(idx_ok), -1)
    pairs = [(dist[a, q], idx_ok[a], j[a, q]) for a in range(len(idx_ok)) for q in range(dist.shape[1]) if np.isfinite(dist[a, q])]
    used_p, used_d = set(), set()
    for _, p, q in sorted(pairs):
        if p in used_p or q in used_d:
            continue
        out[p] = q
        used_p.add(p)
        used_d.add(q)
    return out


def _crowded(pred: np.ndarray, det: np.ndarray, match: np.ndarray, distance_px: float) -> np.ndarray:
    """True for matched beads with another detection or another bead's prediction within ``distance_px``.

    Overlapping beads bias each other's centres, so such observations are left out.
    """
    out = np.zeros(len(pred), dtype=bool)
    for b in np.flatnonzero(match >= 0):
        x = det[match[b]]
        others_det = np.delete(det, match[b], axis=0)
        others_pred = np.delete(pred, b, axis=0)
        others = np.concatenate([others_det, others_pred[np.isfinite(others_pred).all(axis=1)]])
        if len(others) and np.min(np.linalg.norm(others - x, axis=1)) < distance_px:
            out[b] = True
    return out


def track_beads(stack, tilt_angles_deg, bead_diameter_px: float, tilt_axis_angle_deg: float,
                min_track_fraction: float = 0.5, search_radius_px: float | None = None,
                n_max_per_image: int | None = None, crowding_factor: float = 1.2,
                source: str = "tilt series") -> np.ndarray:  # fmt: skip
    """Track gold beads through a tilt series.

    Parameters
    ----------
    stack : np.ndarray
        (n_tilts, ny, nx) raw images in the order of ``tilt_angles_deg``.
    tilt_angles_deg : array_like
        (n_tilts,) tilt angles, degrees (any order).
    bead_diameter_px : float
        Bead diameter in pixels.
    tilt_axis_angle_deg : float
        Nominal tilt-axis angle psi (mdoc), degrees, .xf convention.
    min_track_fraction : float
        Tracks found in fewer than this fraction of the tilts are dropped.
    search_radius_px : float, optional
        Matching radius around each prediction; default ``0.6 * diameter + 3``.
    n_max_per_image : int, optional
        Cap on detections per image.
    crowding_factor : float
        An observation is dropped (NaN) when another detection or another
        bead's predicted position lies within ``crowding_factor * diameter``
        (overlapping beads bias each other's centres); 0 keeps all.
    source : str
        Named in the error raised when no beads are found.

    Returns
    -------
    np.ndarray
        (n_beads, n_tilts, 2) RAW positions (x, y) in pixels, NaN where the bead
        was not found; tilts in input order.

    Raises
    ------
    InputError
        When no bead is found in the tilt nearest 0° or no track is long enough.
    """
    stack_arr = stack
    angles = np.asarray(tilt_angles_deg, dtype=np.float64)
    n, ny, nx = np.shape(stack_arr)
    if angles.size != n:
        raise ValueError(f"{angles.size} tilt angles for {n} images")
    d = float(bead_diameter_px)
    radius = 0.6 * d + 3.0 if search_radius_px is None else float(search_radius_px)
    centre = np.array([nx // 2, ny // 2], dtype=np.float64)
    psi = np.radians(tilt_axis_angle_deg)
    rot = np.array([[np.cos(psi), -np.sin(psi)], [np.sin(psi), np.cos(psi)]])
    t = np.radians(angles)
    order = np.argsort(angles, kind="stable")
    start = int(np.argmin(np.abs(angles[order])))
    shifts = neighbour_shifts(stack_arr, angles, tilt_axis_angle_deg)
    detections = [detect_beads(np.asarray(stack_arr[i]), d, n_max=n_max_per_image) for i in range(n)]
    i0 = order[start]
    seeds = detections[i0]
    if len(seeds) == 0:
        raise InputError(source, f"no gold beads of diameter {d:.1f} px found in the tilt nearest 0° "
                                 f"({angles[i0]:g}°); check the bead diameter / pixel size, or use the "
                                 "cross-correlation fallback")  # fmt: skip
    nb = len(seeds)
    tracks = np.full((nb, n, 2), np.nan)
    tracks[:, i0] = seeds
    # aligned-frame coordinates q = p_t(P) - D_t = R(-psi) (x_raw - c)
    q = np.full((nb, n, 2), np.nan)
    q[:, i0] = (seeds - centre) @ rot  # row-vector form of R(-psi) (x - c)

    def predict(k):
        p = np.empty((nb, 2))
        for b in range(nb):
            seen = np.flatnonzero(np.isfinite(q[b, :, 0]))
            qa = q[b, seen] + shifts[seen]  # p_t(P)
            if seen.size >= 3 and np.ptp(t[seen]) > np.radians(5):
                a = np.column_stack([np.cos(t[seen]), np.sin(t[seen])])
                xz, *_ = np.linalg.lstsq(a, qa[:, 0], rcond=None)
                u = xz[0] * np.cos(t[k]) + xz[1] * np.sin(t[k])
            else:
                j = seen[np.argmin(np.abs(t[seen] - t[k]))]
                u = qa[np.argmin(np.abs(t[seen] - t[k])), 0] * np.cos(t[k]) / np.cos(t[j])
            v = float(np.mean(qa[:, 1]))
            p[b] = (u, v)
        return p

    for direction in (1, -1):
        k_sorted = start + direction
        while 0 <= k_sorted < n:
            k = order[k_sorted]
            det = detections[k]
            p_ali = predict(k)
            pred = centre + (p_ali - shifts[k]) @ rot.T
            if len(det):
                dist, j = cKDTree(det).query(pred, distance_upper_bound=max(radius, 0.25 * min(ny, nx)))
                good = np.isfinite(dist)
                if good.sum() >= 1:
                    offset_raw = np.median(det[j[good]] - pred[good], axis=0)
                    shifts[k] -= rot.T @ offset_raw  # D shifts the aligned frame: raw offset -> -R(-psi) offset
                    pred = centre + (p_ali - shifts[k]) @ rot.T
            m = _match(pred, det, radius)
            hit = m >= 0
            if crowding_factor > 0:
                hit &= ~_crowded(pred, det, m, crowding_factor * d)
            tracks[hit, k] = det[m[hit]]
            q[hit, k] = (det[m[hit]] - centre) @ rot
            k_sorted += direction
    keep = np.isfinite(tracks[..., 0]).sum(axis=1) >= max(3, min_track_fraction * n)
    if not keep.any():
        raise InputError(source, f"no bead could be followed through {min_track_fraction:.0%} of the tilts "
                                 f"(bead diameter {d:.1f} px)")  # fmt: skip
    return tracks[keep]
