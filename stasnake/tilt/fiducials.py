"""Gold-bead detection and tracking through a tilt series.

Detection: normalised cross-correlation (NCC) of the band-passed image with a
DARK bead template (gold is dark in raw images), on a copy binned so the bead is
about 6 px across, local maxima above a threshold, then subpixel refinement by
a parabolic fit of the NCC peak at full size.

Tracking (:func:`track_beads`) first finds every bead's 3-D position and only
then assigns detections to beads, so a track cannot jump from one bead to
another, and beads that overlap in some tilts (or at 0°) are still found:

1. Coarse per-tilt shifts ``D_t`` by stretched cross-correlation of neighbouring
   tilts (:func:`stasnake.tilt.align_xcorr.neighbour_shifts`). Every detection
   is mapped into the aligned frame, ``q = R(-psi) (x_raw - c) + D_t``, where a
   bead at ``(X, Y, Z)`` appears at ``(X cos t + Z sin t, Y)``.
2. Triangulation by votes: a detection ``(u_s, v_s)`` in tilt ``t_s`` puts its
   bead on the line ``X cos t_s + Z sin t_s = u_s, Y = v_s``. For each height Z
   on that line every tilt votes ``1 - (r / tol)^2`` for its detection nearest
   to the line's projection (distance ``r < tol``). The best height, refined by
   least squares on the detections it matched, is a bead when enough tilts
   agree. Seeds are taken three tilts at a time from 0° outwards, skipping
   detections already explained by a bead; candidates are accepted best first
   with non-maximum suppression in 3-D.
3. Per-tilt shift correction by point-pattern matching: the offset between
   predicted beads and detections that most pairs agree on.
4. Fit of the projection model (:func:`stasnake.tilt.align_model.fit_projection_model`):
   tilt axis, shifts, bead positions. Steps 2-4 run a second time from the
   fitted axis, shifts and beads.
5. Assignment: each bead's projection predicted by the fitted model takes the
   nearest detection within half the search radius (greedy, unique). An
   observation is left out when another detection or another bead's predicted
   position lies within ``crowding_factor * diameter`` (overlapping beads merge
   or pull each other's centres), or when its NCC score is well above what that
   bead scores in that tilt (two beads seen as one, one of them never detected
   on its own), unless the tilt would keep fewer than two.

Measured on the synthetic series of tests/test_tilt_fiducials.py (192 px, 8
beads, heavy overlaps): shift error 0.14-0.41 px RMS, axis error < 0.4°, for
seeds 0-3 and 5 (4 cannot be generated); a nominal axis off by 3° is recovered.

Geometry as in :mod:`stasnake.tilt.align_model` (``x_raw = c + R(psi) (p_t(P) - D_t)``).
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.signal
from scipy import ndimage
from scipy.spatial import cKDTree

from stasnake.errors import InputError
from stasnake.tilt.align_model import fit_projection_model
from stasnake.tilt.align_xcorr import neighbour_shifts


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
    small = _bin(image, b)
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


def _bin(image: np.ndarray, factor: int) -> np.ndarray:
    """Block average by an integer factor (remainder cropped), float32; strided adds (9x faster than a reshape-mean)."""
    image = np.asarray(image, dtype=np.float32)
    if factor <= 1:
        return image
    ny, nx = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    out = np.zeros((ny // factor, nx // factor), dtype=np.float32)
    for i in range(factor):
        for j in range(factor):
            out += image[i:ny:factor, j:nx:factor]
    return out / np.float32(factor * factor)


def _refine(image, pos, score, d):
    """Subpixel positions by a parabolic fit of the full-size NCC peak near each binned estimate.

    The NCC (as :func:`normalised_cross_correlation`) is evaluated only where
    the template window lies inside a patch around the estimate, for all
    detections at once; detections too near the edge keep the binned estimate.
    """
    if len(pos) == 0:
        return pos, score
    tmpl = bead_template(d)
    k = tmpl.shape[0]
    half = k // 2
    search = max(2, int(np.ceil(0.25 * d)))
    pad = half + search + 1
    ny, nx = image.shape
    c = np.rint(pos).astype(np.int64)
    ok = (c[:, 1] >= pad) & (c[:, 0] >= pad) & (c[:, 1] + pad < ny) & (c[:, 0] + pad < nx)
    out, out_score = pos.copy(), score.copy()
    if not ok.any():
        return out, out_score
    img = np.asarray(image, dtype=np.float64)
    offs = np.arange(-pad, pad + 1)
    rows = c[ok, 1][:, None, None] + offs[None, :, None]
    cols = c[ok, 0][:, None, None] + offs[None, None, :]
    patches = -img[rows, cols]  # (n, P, P), P = 2 pad + 1, beads bright
    size = patches.shape[1]
    m = size - k + 1  # valid positions per axis: 2 search + 3
    fft_len = scipy.fft.next_fast_len(size, real=True)
    spec = scipy.fft.rfft2(patches, s=(fft_len, fft_len), axes=(1, 2), workers=-1)
    spec *= np.conj(scipy.fft.rfft2(tmpl, s=(fft_len, fft_len)))[None]
    corr = scipy.fft.irfft2(spec, s=(fft_len, fft_len), axes=(1, 2), workers=-1)[:, :m, :m]

    def box(a):  # sums over every k x k window fully inside the patch, (n, m, m)
        cum = np.zeros((a.shape[0], size + 1, size + 1))
        cum[:, 1:, 1:] = a.cumsum(axis=1).cumsum(axis=2)
        return cum[:, k:, k:] - cum[:, :m, k:] - cum[:, k:, :m] + cum[:, :m, :m]

    s1 = box(patches)
    var = np.maximum(box(patches * patches) - s1 * s1 / (k * k), 0.0)
    ncc = corr / np.sqrt(var + 1e-12 * (var.max(axis=(1, 2), keepdims=True) + 1e-30))
    m = ncc.shape[1]
    core = ncc[:, 1 : m - 1, 1 : m - 1]
    best = np.argmax(core.reshape(len(core), -1), axis=1)
    j, q = np.unravel_index(best, core.shape[1:])
    py, px = j + 1, q + 1
    n_idx = np.arange(len(core))
    c0 = ncc[n_idx, py, px]
    dy = _parabolic_array(ncc[n_idx, py - 1, px], c0, ncc[n_idx, py + 1, px])
    dx = _parabolic_array(ncc[n_idx, py, px - 1], c0, ncc[n_idx, py, px + 1])
    # ncc[:, a, b] is centred on patch pixel (a + half, b + half) = image pixel c - pad + (a + half, b + half)
    out[ok, 0] = c[ok, 0] - pad + half + px + dx
    out[ok, 1] = c[ok, 1] - pad + half + py + dy
    out_score[ok] = c0
    return out, out_score


def _parabolic_array(c_m, c_0, c_p) -> np.ndarray:
    """Vectorised :func:`_parabolic`: vertex offset in [-0.5, 0.5], 0 where the three values are not a peak."""
    den = c_m - 2 * c_0 + c_p
    with np.errstate(divide="ignore", invalid="ignore"):
        off = np.where(den < 0, 0.5 * (c_m - c_p) / np.where(den < 0, den, -1.0), 0.0)
    return np.clip(off, -0.5, 0.5)


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


def _rotation(psi_deg: float) -> np.ndarray:
    """R(psi) = [[cos, -sin], [sin, cos]] acting on (x, y) column vectors."""
    p = np.radians(psi_deg)
    return np.array([[np.cos(p), -np.sin(p)], [np.sin(p), np.cos(p)]])


def _project(beads: np.ndarray, t_rad: np.ndarray) -> np.ndarray:
    """(n_beads, n_tilts, 2) aligned-frame projections ``p_t(P) = (X cos t + Z sin t, Y)``."""
    u = beads[:, 0:1] * np.cos(t_rad)[None] + beads[:, 2:3] * np.sin(t_rad)[None]
    return np.stack([u, np.broadcast_to(beads[:, 1:2], u.shape)], axis=-1)


class _AlignedDetections:
    """Detections of every tilt in the aligned frame ``q = R(-psi) (x_raw - c) + D_t``.

    Holds one KD-tree per tilt and all detections sorted by v (the coordinate
    along the tilt axis, which does not change with tilt) for band queries.
    """

    def __init__(self, detections, centre, psi_deg, shifts):
        rot = _rotation(psi_deg)
        # row-vector form: (x - c) @ R(psi) = R(-psi) (x - c)
        self.q = [(det - centre) @ rot + shifts[i] for i, det in enumerate(detections)]
        self.trees = [cKDTree(q) if len(q) else None for q in self.q]
        tilt = np.concatenate([np.full(len(q), i, dtype=np.int64) for i, q in enumerate(self.q)])
        allq = np.concatenate([q.reshape(-1, 2) for q in self.q])
        order = np.argsort(allq[:, 1], kind="stable")
        self.u, self.v, self.tilt = allq[order, 0], allq[order, 1], tilt[order]

    def nearest(self, pred: np.ndarray, radius: float) -> np.ndarray:
        """(n_beads, n_tilts) index of the nearest detection within ``radius`` of each prediction, -1 if none."""
        nb, n = pred.shape[:2]
        idx = np.full((nb, n), -1, dtype=np.int64)
        for i, tree in enumerate(self.trees):
            if tree is None or nb == 0:
                continue
            dist, j = tree.query(pred[:, i], distance_upper_bound=radius)
            ok = np.isfinite(dist)
            idx[ok, i] = j[ok]
        return idx


def _refine_positions(beads, t_rad, aligned: _AlignedDetections, radius: float, n_iter: int = 3):
    """Least-squares (X, Y, Z) of each bead from the detections nearest its predictions.

    Returns the refined (n_beads, 3) positions and the number of tilts matched.
    """
    beads = np.array(beads, dtype=np.float64).reshape(-1, 3)
    n = t_rad.size
    c, s = np.cos(t_rad), np.sin(t_rad)
    hits = np.zeros(len(beads), dtype=np.int64)
    for _ in range(n_iter):
        idx = aligned.nearest(_project(beads, t_rad), radius)
        hit = idx >= 0
        obs = np.zeros(idx.shape + (2,))
        for i in range(n):
            if hit[:, i].any():
                obs[hit[:, i], i] = aligned.q[i][idx[hit[:, i], i]]
        w = hit.astype(np.float64)
        a11, a12, a22 = w @ (c * c), w @ (c * s), w @ (s * s)
        b1, b2 = (w * obs[..., 0]) @ c, (w * obs[..., 0]) @ s
        det = a11 * a22 - a12 * a12
        ok = (hit.sum(axis=1) >= 2) & (det > 1e-3 * np.maximum(a11 * a22, 1e-30))  # needs a spread of tilts
        beads[ok, 0] = (a22[ok] * b1[ok] - a12[ok] * b2[ok]) / det[ok]
        beads[ok, 2] = (a11[ok] * b2[ok] - a12[ok] * b1[ok]) / det[ok]
        has = hit.sum(axis=1) > 0
        beads[has, 1] = (w[has] * obs[has, :, 1]).sum(axis=1) / w[has].sum(axis=1)
        hits = hit.sum(axis=1)
    return beads, hits


def _height_votes(seed_uv, seed_tilt: int, t_rad, aligned: _AlignedDetections, tol: float, z: np.ndarray) -> np.ndarray:
    """Soft votes (n_z,) of all tilts for the heights ``z`` of the bead seen at ``seed_uv`` in ``seed_tilt``.

    The bead lies on ``X cos t_s + Z sin t_s = u_s``, ``Y = v_s``. At each
    candidate height its projection into tilt ``t`` is compared with that
    tilt's detections; a detection at distance ``r < tol`` gives the vote
    ``1 - (r / tol)^2``, and each tilt votes once (its best detection).
    """
    us, vs = seed_uv
    lo, hi = np.searchsorted(aligned.v, [vs - tol, vs + tol])
    cu, cv, ct = aligned.u[lo:hi], aligned.v[lo:hi], aligned.tilt[lo:hi]
    other = ct != seed_tilt
    cu, cv, ct = cu[other], cv[other], ct[other]
    votes = np.ones(z.size)  # the seed's own tilt
    if ct.size == 0:
        return votes
    x = (us - z * np.sin(t_rad[seed_tilt])) / np.cos(t_rad[seed_tilt])
    pu = x[None] * np.cos(t_rad[ct])[:, None] + z[None] * np.sin(t_rad[ct])[:, None]
    w = 1.0 - ((pu - cu[:, None]) ** 2 + ((cv - vs) ** 2)[:, None]) / (tol * tol)
    np.maximum(w, 0.0, out=w)
    srt = np.argsort(ct, kind="stable")
    ct_sorted = ct[srt]
    starts = np.flatnonzero(np.r_[True, ct_sorted[1:] != ct_sorted[:-1]])
    return votes + np.maximum.reduceat(w[srt], starts, axis=0).sum(axis=0)


def _find_beads(aligned: _AlignedDetections, t_rad, tol: float, min_hits: int, separation_px: float,
                z_max_px: float, beads_init=None) -> np.ndarray:  # fmt: skip
    """3-D bead positions (n, 3) found by triangulation votes (module docstring, step 2).

    ``beads_init`` (e.g. from an earlier model fit) are refined and kept when
    they still match ``min_hits`` tilts; the detections they explain are not
    used as seeds.
    """
    n = t_rad.size
    z = np.arange(-z_max_px, z_max_px + 0.25 * tol, 0.5 * tol)
    claimed = [np.zeros(len(q), dtype=bool) for q in aligned.q]
    beads = np.zeros((0, 3))

    def accept(cands, score):
        nonlocal beads
        cands, hits = _refine_positions(cands, t_rad, aligned, tol)
        for r in np.lexsort((-score, -hits)):  # most tilts matched first, then the highest vote
            if hits[r] < min_hits or not np.all(np.isfinite(cands[r])):
                continue
            if len(beads) and np.min(np.linalg.norm(beads - cands[r], axis=1)) < separation_px:
                continue  # the same bead found from another seed
            beads = np.vstack([beads, cands[r]])
        idx = aligned.nearest(_project(beads, t_rad), min(tol, 0.5 * separation_px + 1.0))
        for i in range(n):
            claimed[i][idx[idx[:, i] >= 0, i]] = True

    if beads_init is not None and len(beads_init):
        init = np.asarray(beads_init, dtype=np.float64)
        accept(init[np.all(np.isfinite(init), axis=1)], np.zeros(len(init)))
    order = np.argsort(np.abs(t_rad), kind="stable")
    for start in range(0, n, 3):  # seeds from three tilts at a time, from 0° outwards
        cands, score = [], []
        for i in order[start : start + 3]:
            for j in np.flatnonzero(~claimed[i]):
                votes = _height_votes(aligned.q[i][j], i, t_rad, aligned, tol, z)
                k = int(np.argmax(votes))
                if votes[k] < 0.6 * min_hits:
                    continue
                us, vs = aligned.q[i][j]
                cands.append([(us - z[k] * np.sin(t_rad[i])) / np.cos(t_rad[i]), vs, z[k]])
                score.append(votes[k])
        if cands:
            accept(np.array(cands), np.array(score))
        if all(c.all() for c in claimed):
            break
    return beads


def _tilt_offsets(beads, t_rad, aligned: _AlignedDetections, tol: float, max_offset_px: float) -> np.ndarray:
    """(n_tilts, 2) aligned-frame offset of each tilt's detections from the predicted beads.

    Point-pattern matching: among all (detection - prediction) differences
    within ``max_offset_px`` the one with the most others within ``tol / 2``
    wins (ties: the smaller offset); the median of that cluster is returned.
    Tilts where fewer than two pairs agree get 0.
    """
    n = t_rad.size
    pred = _project(beads, t_rad)
    out = np.zeros((n, 2))
    for i in range(n):
        q = aligned.q[i]
        if len(q) == 0 or len(beads) < 2:
            continue
        diff = (q[None, :, :] - pred[:, i, None, :]).reshape(-1, 2)
        diff = diff[np.hypot(diff[:, 0], diff[:, 1]) <= max_offset_px]
        if len(diff) < 2:
            continue
        counts = cKDTree(diff).query_ball_point(diff, 0.5 * tol, return_length=True)
        best = int(np.argmax(counts - np.hypot(diff[:, 0], diff[:, 1]) / (max_offset_px + 1.0)))
        if counts[best] < 2:
            continue
        members = diff[np.linalg.norm(diff - diff[best], axis=1) <= 0.5 * tol]
        out[i] = np.median(members, axis=0)
    return out


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
    pairs = sorted((dist[a, q], idx_ok[a], j[a, q]) for a in range(len(idx_ok)) for q in range(dist.shape[1])
                   if np.isfinite(dist[a, q]))  # fmt: skip
    used_p, used_d = set(), set()
    for _, p, q in pairs:
        if p in used_p or q in used_d:
            continue
        out[p] = q
        used_p.add(p)
        used_d.add(q)
    return out


def _crowding_distance(pred: np.ndarray, det: np.ndarray, match: np.ndarray) -> np.ndarray:
    """Per matched bead, the distance from its detection to the nearest OTHER detection or other bead's prediction.

    ``inf`` for unmatched beads or when there is nothing else.
    """
    out = np.full(len(pred), np.inf)
    hit = np.flatnonzero(match >= 0)
    if hit.size == 0:
        return out
    x = det[match[hit]]
    to_det = np.linalg.norm(x[:, None] - det[None], axis=-1)
    to_det[np.arange(hit.size), match[hit]] = np.inf
    p = np.where(np.isfinite(pred), pred, np.inf)
    with np.errstate(invalid="ignore"):
        to_pred = np.linalg.norm(x[:, None] - p[None], axis=-1)
    to_pred[np.arange(hit.size), hit] = np.inf
    out[hit] = np.minimum(to_det.min(axis=1), np.nan_to_num(to_pred, nan=np.inf).min(axis=1))
    return out


def _relative_scores(score: np.ndarray) -> np.ndarray:
    """(n_beads, n_tilts) NCC scores over what is expected for that bead in that tilt (NaN where unmatched).

    Expected = the bead's median score times the tilt's median of (score /
    bead median) over all beads: beads differ in size and contrast, tilts in
    ice thickness and dose, and false features (whatever their number) do
    not set the scale of the real beads.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.full_like(score, np.nan)
        has_b = np.isfinite(score).any(axis=1)
        if not has_b.any():
            return rel
        rel[has_b] = score[has_b] / np.nanmedian(score[has_b], axis=1, keepdims=True)
        has_t = np.isfinite(rel).any(axis=0)
        rel[:, has_t] /= np.nanmedian(rel[:, has_t], axis=0, keepdims=True)
    return rel


def _assign(pred_raw: np.ndarray, detections, scores, radius: float, crowd_px: float,
            merged_score_ratio: float | None, min_per_tilt: int = 2) -> np.ndarray:  # fmt: skip
    """(n_beads, n_tilts, 2) detections matched to predicted RAW bead positions (module docstring, step 5)."""
    nb, n = pred_raw.shape[:2]
    tracks = np.full((nb, n, 2), np.nan)
    matches = [_match(pred_raw[:, i], detections[i], radius) for i in range(n)]
    relative = _relative_scores(np.column_stack([np.where(m >= 0, scores[i][np.maximum(m, 0)], np.nan)
                                                 for i, m in enumerate(matches)]))  # fmt: skip
    limit = np.inf if merged_score_ratio is None else merged_score_ratio
    for i, m in enumerate(matches):
        det = detections[i]
        hit = m >= 0
        if not hit.any():
            continue
        clear = hit & ~(relative[:, i] > limit)
        if crowd_px > 0:
            clear &= _crowding_distance(pred_raw[:, i], det, m) >= crowd_px
        if (hit & clear).sum() >= min_per_tilt:
            hit &= clear
        tracks[hit, i] = det[m[hit]]
    return tracks


def track_beads_with_shifts(stack, tilt_angles_deg, bead_diameter_px: float, tilt_axis_angle_deg: float,
                            min_track_fraction: float = 0.25, min_vote_fraction: float = 0.5,
                            search_radius_px: float | None = None, n_max_per_image: int | None = None,
                            crowding_factor: float = 1.0, merged_score_ratio: float | None = 1.25,
                            source: str = "tilt series") -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Like :func:`track_beads`, also returning the tracker's per-tilt shifts.

    Returns
    -------
    tracks : np.ndarray
        (n_beads, n_tilts, 2), see :func:`track_beads`.
    shifts : np.ndarray
        (n_tilts, 2) .xf shifts D (pixels) of the tracker's last model, for every
        tilt, including tilts in which no bead could be observed (there they come
        from the cross-correlation and the point-pattern correction). Pass them
        as ``fallback_shifts_px`` to
        :func:`stasnake.tilt.align_model.fit_projection_model`.
    """
    angles = np.asarray(tilt_angles_deg, dtype=np.float64)
    n, ny, nx = np.shape(stack)
    if angles.size != n:
        raise ValueError(f"{angles.size} tilt angles for {n} images")
    d = float(bead_diameter_px)
    tol = 0.6 * d + 3.0 if search_radius_px is None else float(search_radius_px)
    radius_final = max(3.0, 0.5 * tol)
    crowd_px = crowding_factor * d
    min_obs = int(max(3, np.ceil(min_track_fraction * n)))
    min_votes = int(max(4, np.ceil(min_vote_fraction * n)))
    centre = np.array([nx // 2, ny // 2], dtype=np.float64)
    t = np.radians(angles)
    found = [detect_beads_with_scores(np.asarray(stack[i]), d, n_max=n_max_per_image) for i in range(n)]
    detections, scores = [f[0] for f in found], [f[1] for f in found]
    if sum(len(det) for det in detections) == 0:
        raise InputError(source, f"no gold beads of diameter {d:.1f} px found in any of the {n} tilts; check the "
                                 "bead diameter / pixel size, or use the cross-correlation fallback")  # fmt: skip
    psi = float(tilt_axis_angle_deg)
    shifts = neighbour_shifts(stack, angles, psi)
    z_max = 0.5 * max(nx, ny)
    beads = None
    tracks = np.zeros((0, n, 2))
    for final in (False, True):
        aligned = _AlignedDetections(detections, centre, psi, shifts)
        beads = _find_beads(aligned, t, tol, min_votes, 0.5 * d, z_max, beads_init=beads)
        if len(beads) == 0:
            raise InputError(source, f"no gold bead of diameter {d:.1f} px was detected consistently in "
                                     f"{min_vote_fraction:.0%} of the tilts; check the bead diameter / pixel size "
                                     "and the tilt-axis angle, or use the cross-correlation fallback")  # fmt: skip
        shifts = shifts - _tilt_offsets(beads, t, aligned, tol, 0.25 * min(nx, ny))
        aligned = _AlignedDetections(detections, centre, psi, shifts)
        beads, _ = _refine_positions(beads, t, aligned, tol)
        rot = _rotation(psi)
        pred = centre + (_project(beads, t) - shifts[None]) @ rot.T
        tracks = _assign(pred, detections, scores, radius_final if final else tol, crowd_px if final else 0.0,
                         merged_score_ratio if final else None)  # fmt: skip
        if (np.isfinite(tracks[..., 0]).sum(axis=1) >= 3).sum() < 3:
            tracks = _assign(pred, detections, scores, tol, crowd_px, merged_score_ratio)
            break  # too few beads for a model; the caller's fit reports it
        fit = fit_projection_model(tracks, angles, (ny, nx), psi, fallback_shifts_px=shifts, source=source)
        psi, shifts, beads = fit["tilt_axis_angle_deg"], fit["shifts"], fit["bead_positions"]
        beads = beads[np.all(np.isfinite(beads), axis=1)]  # rejected beads stay: they still crowd their neighbours
        rot = _rotation(psi)
        pred = centre + (_project(beads, t) - shifts[None]) @ rot.T
        tracks = _assign(pred, detections, scores, radius_final, crowd_px, merged_score_ratio)
    keep = np.isfinite(tracks[..., 0]).sum(axis=1) >= min_obs
    if not keep.any():
        raise InputError(source, f"no gold bead of diameter {d:.1f} px was observed clear of its neighbours in "
                                 f"{min_track_fraction:.0%} of the tilts; use the cross-correlation fallback")  # fmt: skip
    return tracks[keep], shifts


def track_beads(stack, tilt_angles_deg, bead_diameter_px: float, tilt_axis_angle_deg: float,
                min_track_fraction: float = 0.25, min_vote_fraction: float = 0.5,
                search_radius_px: float | None = None, n_max_per_image: int | None = None,
                crowding_factor: float = 1.0, merged_score_ratio: float | None = 1.25,
                source: str = "tilt series") -> np.ndarray:  # fmt: skip
    """Track gold beads through a tilt series (module docstring: triangulation, model fit, assignment).

    Parameters
    ----------
    stack : np.ndarray
        (n_tilts, ny, nx) raw images in the order of ``tilt_angles_deg``.
    tilt_angles_deg : array_like
        (n_tilts,) tilt angles, degrees (any order).
    bead_diameter_px : float
        Bead diameter in pixels.
    tilt_axis_angle_deg : float
        Nominal tilt-axis angle psi (mdoc), degrees, .xf convention; refined
        internally by the model fit.
    min_track_fraction : float
        A bead must be observed (after the crowding rule) in at least this
        fraction of the tilts, and in 3, to be returned. The tracks come from
        a 3-D model, so short ones are still the right bead.
    min_vote_fraction : float
        A bead exists when at least this fraction of the tilts (and 4) have a
        detection where its triangulated position projects.
    search_radius_px : float, optional
        Tolerance of the triangulation votes and of the first assignment;
        default ``0.6 * diameter + 3``. The final assignment uses half of it
        (at least 3 px) around the fitted model's predictions.
    n_max_per_image : int, optional
        Cap on detections per image.
    crowding_factor : float
        An observation is dropped (NaN) when another detection or another
        bead's predicted position lies within ``crowding_factor * diameter``
        (overlapping beads merge or pull each other's centres by several px;
        at 1.0-1.5 diameters the bias is 0.5-0.9 px, measured), unless fewer
        than two observations would remain in that tilt; 0 keeps all.
    merged_score_ratio : float or None
        An observation whose NCC score exceeds this multiple of the score
        expected for that bead in that tilt (the bead's median score times
        the tilt's median ratio) is taken for two beads seen as one (a merged
        blob is darker and larger than one bead and scores higher) and
        dropped, with the same two-per-tilt proviso; None keeps all.
    source : str
        Named in the errors raised.

    Returns
    -------
    np.ndarray
        (n_beads, n_tilts, 2) RAW positions (x, y) in pixels, NaN where the bead
        was not observed; tilts in input order.

    Raises
    ------
    InputError
        When no bead is detected in any tilt, or no bead can be followed
        through ``min_track_fraction`` of the tilts.
    """
    return track_beads_with_shifts(stack, tilt_angles_deg, bead_diameter_px, tilt_axis_angle_deg,
                                   min_track_fraction, min_vote_fraction, search_radius_px, n_max_per_image,
                                   crowding_factor, merged_score_ratio, source)[0]  # fmt: skip
