"""Fiducial projection model: tilt axis, per-tilt shifts and 3-D bead positions.

Geometry (docs/conventions.md). A bead at ``P = (X, Y, Z)`` (pixels about the
tomogram centre) projects in the ALIGNED image of tilt ``t`` to
``p_t(P) = (X cos t + Z sin t, Y)`` about the image centre ``c = (nx // 2, ny // 2)``
((column, row) coordinates). The .xf row maps raw -> aligned,
``x_ali - c = A (x_raw - c) + D`` with ``A = R(-psi) / m_t``, so the bead is
observed in the RAW image at::

    x_raw = c + m_t R(psi) (p_t(P) - D_t),     R(psi) = [[cos, -sin], [sin, cos]]

with one global tilt-axis angle ``psi``, per-tilt shifts ``D_t`` (the .xf
``DX DY``), optional per-tilt magnification ``m_t`` (1 at the tilt nearest 0°)
and an optional global tilt-angle offset ``t = t_nominal + delta``. The model is
fitted to the tracked bead positions with :func:`scipy.optimize.least_squares`.

Gauge. A rigid translation ``d`` of all beads changes nothing observable when
every shift changes by ``g_t(d) = (dX cos t + dZ sin t, dY)``. stasnake fixes
this three-parameter freedom by choosing the MINIMUM-NORM shifts: ``D`` is made
orthogonal to the patterns ``cos t`` and ``sin t`` (in DX) and ``1`` (in DY),
i.e. ``sum_t DY_t = 0``, ``sum_t DX_t cos t = 0``, ``sum_t DX_t sin t = 0``
(:func:`minimum_norm_gauge`). The tomogram stays centred on the image centre as
well as the raw images allow: the specimen point that is, on average over the
series, imaged at the raw image centre becomes the tomogram centre, and no
tomogram shift is invented from where the beads happen to lie.

A tilt without any bead observation has shifts that the data do not fix at
all. Such shifts are held out of the fit and of the gauge (left in, they
absorbed the whole gauge: a fit with 0.4 px residual had shifts 35 px off in
every tilt) and taken from ``fallback_shifts_px``, moved into the model's
gauge; without a fallback the fit raises :class:`stasnake.errors.InputError`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
from scipy.optimize import least_squares

from stasnake.errors import InputError
from stasnake.io.atomic import write_text_atomic

_MAD_SIGMA = 1.4826


def minimum_norm_gauge(shifts_px, tilt_angles_deg, use=None) -> tuple[np.ndarray, np.ndarray]:
    """Remove the shift patterns of a rigid 3-D translation (the gauge) from per-tilt shifts.

    Parameters
    ----------
    shifts_px : array_like
        (n, 2) shifts D (DX, DY) in pixels.
    tilt_angles_deg : array_like
        (n,) tilt angles (degrees) that the shifts belong to.
    use : array_like of bool, optional
        (n,) tilts whose shifts define the gauge (default: all); the same
        translation is applied to every tilt.

    Returns
    -------
    shifts : np.ndarray
        (n, 2) ``D + g(d)`` with ``g_t(d) = (dX cos t + dZ sin t, dY)``, the
        member of the gauge family with the smallest norm.
    translation : np.ndarray
        (3,) ``d = (dX, dY, dZ)`` in pixels; bead positions must be moved by
        ``+d`` to keep the same projections.
    """
    d_shift = np.asarray(shifts_px, dtype=np.float64)
    t = np.radians(np.asarray(tilt_angles_deg, dtype=np.float64))
    use = np.ones(t.size, dtype=bool) if use is None else np.asarray(use, dtype=bool)
    basis = np.column_stack([np.cos(t), np.sin(t)])
    coef, *_ = np.linalg.lstsq(basis[use], -d_shift[use, 0], rcond=None)
    dy = -float(np.mean(d_shift[use, 1]))
    out = d_shift.copy()
    out[:, 0] += basis @ coef
    out[:, 1] += dy
    return out, np.array([coef[0], dy, coef[1]])


def _rot(psi):
    c, s = np.cos(psi), np.sin(psi)
    return np.array([[c, -s], [s, c]])


class _Model:
    """Parameter packing and residuals of the projection model."""

    def __init__(self, obs, angles_deg, centre, ref_tilt, fit_offset, fit_mag):
        self.obs = obs
        self.mask = np.isfinite(obs[..., 0])
        self.t0 = np.radians(angles_deg)
        self.c = centre
        self.ref = ref_tilt
        self.fit_offset = fit_offset
        self.fit_mag = fit_mag
        self.nb, self.nt = obs.shape[:2]
        self.mag_tilts = np.array([i for i in range(self.nt) if i != ref_tilt], dtype=np.int64)
        self.n_mag = len(self.mag_tilts) if fit_mag else 0
        self.i_d = 1 + int(fit_offset) + self.n_mag
        self.i_p = self.i_d + 2 * self.nt
        self.n_params = self.i_p + 3 * self.nb
        self.gauge_weight = 1.0 / np.sqrt(self.nt)
        # a tilt without observations has free shifts: they are held at their start value
        # and left out of the gauge rows (else they would absorb the gauge, see fit_projection_model)
        self.observed = self.mask.any(axis=0)
        self.free = np.flatnonzero(~self.observed)
        self.shifts_start = np.zeros((self.nt, 2))

    def pack(self, psi, offset, mag, shifts, beads):
        parts = [[psi]]
        if self.fit_offset:
            parts.append([offset])
        if self.fit_mag:
            parts.append(mag[self.mag_tilts] - 1.0)
        parts += [shifts.ravel(), beads.ravel()]
        return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])

    def unpack(self, x):
        psi = x[0]
        offset = x[1] if self.fit_offset else 0.0
        mag = np.ones(self.nt)
        if self.fit_mag:
            k = 1 + int(self.fit_offset)
            mag[self.mag_tilts] = 1.0 + x[k : k + self.n_mag]
        shifts = x[self.i_d : self.i_p].reshape(self.nt, 2)
        beads = x[self.i_p :].reshape(self.nb, 3)
        return psi, offset, mag, shifts, beads

    def predict(self, x):
        psi, offset, mag, shifts, beads = self.unpack(x)
        t = self.t0 + offset
        u = beads[:, 0:1] * np.cos(t)[None, :] + beads[:, 2:3] * np.sin(t)[None, :]
        v = np.broadcast_to(beads[:, 1:2], u.shape)
        q = np.stack([u, v], axis=-1) - shifts[None]
        r = _rot(psi)
        return self.c + mag[None, :, None] * np.einsum("ij,btj->bti", r, q)

    def residuals(self, x):
        diff = (self.predict(x) - self.obs)[self.mask].ravel()
        _, _, _, shifts, _ = self.unpack(x)
        w = self.observed
        g = self.gauge_weight * np.array([
            shifts[w, 1].sum(), shifts[w, 0] @ np.cos(self.t0[w]), shifts[w, 0] @ np.sin(self.t0[w]),
        ])  # fmt: skip
        hold = self.gauge_weight * (shifts[self.free] - self.shifts_start[self.free]).ravel()
        return np.concatenate([diff, g, hold])

    def jacobian(self, x):
        """Analytic sparse Jacobian of :meth:`residuals`, (2 n_obs + 3 + 2 n_free, n_params) CSR."""
        psi, offset, mag, shifts, beads = self.unpack(x)
        b_idx, t_idx = np.nonzero(self.mask)
        n_obs = b_idx.size
        t = self.t0[t_idx] + offset
        ct, st = np.cos(t), np.sin(t)
        p = beads[b_idx]
        q = np.column_stack([p[:, 0] * ct + p[:, 2] * st - shifts[t_idx, 0], p[:, 1] - shifts[t_idx, 1]])
        c, s = np.cos(psi), np.sin(psi)
        r = np.array([[c, -s], [s, c]])
        dr = np.array([[-s, -c], [c, -s]])
        m = mag[t_idx][:, None]
        cols_vals = [(np.zeros(n_obs, dtype=np.int64), m * (q @ dr.T))]
        if self.fit_offset:
            du = -p[:, 0] * st + p[:, 2] * ct
            cols_vals.append((np.ones(n_obs, dtype=np.int64), m * du[:, None] * r[:, 0][None]))
        cols_vals += [
            (self.i_d + 2 * t_idx, -m * r[:, 0][None]),
            (self.i_d + 2 * t_idx + 1, -m * r[:, 1][None]),
            (self.i_p + 3 * b_idx, m * ct[:, None] * r[:, 0][None]),
            (self.i_p + 3 * b_idx + 1, m * r[:, 1][None] * np.ones((n_obs, 1))),
            (self.i_p + 3 * b_idx + 2, m * st[:, None] * r[:, 0][None]),
        ]
        rows, cols, vals = [], [], []
        for col, val in cols_vals:
            val = np.broadcast_to(val, (n_obs, 2))
            for comp in range(2):
                rows.append(2 * np.arange(n_obs) + comp)
                cols.append(col)
                vals.append(val[:, comp])
        if self.fit_mag:
            has = t_idx != self.ref
            col = 1 + int(self.fit_offset) + np.searchsorted(self.mag_tilts, t_idx[has])
            rq = q[has] @ r.T
            for comp in range(2):
                rows.append(2 * np.flatnonzero(has) + comp)
                cols.append(col)
                vals.append(rq[:, comp])
        w = np.flatnonzero(self.observed)
        nw = w.size
        rows.append(2 * n_obs + np.repeat(np.arange(3), nw))
        cols.append(self.i_d + np.concatenate([2 * w + 1, 2 * w, 2 * w]))
        vals.append(self.gauge_weight * np.concatenate([np.ones(nw), np.cos(self.t0[w]), np.sin(self.t0[w])]))
        n_hold = 2 * self.free.size
        rows.append(2 * n_obs + 3 + np.arange(n_hold))
        cols.append(self.i_d + (2 * self.free[:, None] + np.arange(2)[None]).ravel())
        vals.append(np.full(n_hold, self.gauge_weight))
        rows, cols, vals = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
        return scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(2 * n_obs + 3 + n_hold, self.n_params)).tocsr()


def _initial_guess(obs, angles_deg, centre, psi_deg, ref):
    """Z = 0; X, Y from the reference (near-zero) tilt; shifts from the tracks' mean."""
    nb, nt = obs.shape[:2]
    rinv = _rot(-np.radians(psi_deg))
    rot_obs = np.einsum("ij,btj->bti", rinv, obs - centre)  # = p_t(P) - D_t
    t = np.radians(angles_deg)
    beads = np.zeros((nb, 3))
    for b in range(nb):
        seen = np.flatnonzero(np.isfinite(obs[b, :, 0]))
        k = seen[np.argmin(np.abs(seen - ref))]
        beads[b, 0] = rot_obs[b, k, 0] / np.cos(t[k])
        beads[b, 1] = rot_obs[b, k, 1]
    proj = np.stack([beads[:, 0:1] * np.cos(t)[None], np.broadcast_to(beads[:, 1:2], (nb, nt))], axis=-1)
    diff = proj - rot_obs
    has = np.isfinite(diff[..., 0])
    count = has.sum(axis=0)
    shifts = np.where(has[..., None], diff, 0.0).sum(axis=0) / np.maximum(count, 1)[:, None]
    return beads, shifts


def _fit_once(model: _Model, x0, robust):
    sol = least_squares(model.residuals, x0, jac=model.jacobian, method="trf", tr_solver="lsmr",
                        loss="huber" if robust else "linear", f_scale=1.0, x_scale="jac",
                        xtol=1e-10, ftol=1e-10, max_nfev=200, tr_options={"atol": 1e-12, "btol": 1e-12})  # fmt: skip
    return sol.x


def fit_projection_model(tracks, tilt_angles_deg, image_shape, tilt_axis_angle_deg_initial: float,
                         fit_tilt_offset: bool = False, fit_magnification: bool = False, robust: bool = True,
                         rejection_mad_sigmas: float = 3.0, min_rejection_px: float = 0.5,
                         fallback_shifts_px=None, source: str = "fiducial tracks") -> dict:  # fmt: skip
    """Fit the fiducial projection model to tracked bead positions.

    Parameters
    ----------
    tracks : array_like
        (n_beads, n_tilts, 2) observed RAW positions (x = column, y = row) in
        pixels, NaN where a bead was not found.
    tilt_angles_deg : array_like
        (n_tilts,) nominal tilt angles, degrees (any order; outputs follow it).
    image_shape : tuple of int
        (ny, nx) of the raw images; the centre is ``(nx // 2, ny // 2)``.
    tilt_axis_angle_deg_initial : float
        Starting tilt-axis angle psi (mdoc), degrees.
    fit_tilt_offset : bool
        Report one global offset added to all tilt angles. A global offset is
        indistinguishable from rotating all beads about Y, so it is not a
        least-squares parameter: it is the rotation that makes the beads'
        plane level in X (``Z`` independent of ``X``), as IMOD does when it
        levels a specimen from its fiducials.
    fit_magnification : bool
        Fit a magnification per tilt (1 at the tilt nearest 0°).
    robust : bool
        First fit with a Huber loss (1 px scale), then iterative rejection of beads whose mean
        residual exceeds the median by ``rejection_mad_sigmas`` MAD-sigmas (and
        by at least ``min_rejection_px``), worst first, then rejection of single
        observations above ``max(5 MAD-sigma, 3 px)``; the final fit is plain
        least squares on what is kept. Without ``fallback_shifts_px`` no
        rejection removes the last observations of a tilt.
    rejection_mad_sigmas, min_rejection_px : float
        Bead rejection threshold (see ``robust``).
    fallback_shifts_px : array_like, optional
        (n_tilts, 2) shifts D in any gauge (e.g. from cross-correlation or
        :func:`stasnake.tilt.fiducials.track_beads_with_shifts`), used for
        tilts in which no bead observation is left: the data say nothing
        about such a tilt's shift. They are moved into the model's gauge by
        the rigid-translation pattern that best matches them to the fitted
        shifts of the observed tilts. Without them such tilts raise.
    source : str
        Named in the errors raised.

    Returns
    -------
    dict
        ``tilt_axis_angle_deg``; ``tilt_angle_offset_deg``; ``tilt_angles_deg``
        (n_tilts,) fitted angles; ``magnification`` (n_tilts,); ``shifts``
        (n_tilts, 2) .xf DX DY (minimum-norm gauge, see module docstring);
        ``bead_positions`` (n_beads, 3) X, Y, Z px about the tomogram centre
        (rejected beads: least-squares position against the final model); ``residuals`` (n_beads, n_tilts, 2) predicted
        minus observed raw position (NaN where not observed);
        ``residual_per_bead`` (n_beads,) and ``residual_per_tilt`` (n_tilts,)
        mean residual length over the kept observations (rejected beads:
        against the final model); ``residual_rms_px`` RMS residual length over
        kept observations; ``rejected_beads`` list of bead indices;
        ``n_rejected_observations``; ``n_observations``; ``unobserved_tilts``
        list of tilt indices whose shifts come from ``fallback_shifts_px``;
        ``image_shape``; ``method`` = "fiducial"; ``fallback`` = False.

    Raises
    ------
    InputError
        Fewer than 3 beads tracked in 3 or more tilts, or a tilt without any
        kept observation and no ``fallback_shifts_px``.
    """
    robust_rejection = robust
    obs = np.array(tracks, dtype=np.float64)
    angles = np.asarray(tilt_angles_deg, dtype=np.float64)
    if obs.ndim != 3 or obs.shape[2] != 2 or obs.shape[1] != angles.size:
        raise ValueError(f"tracks must be (n_beads, {angles.size}, 2), got {obs.shape}")
    seen = np.isfinite(obs).all(axis=2)
    obs[~seen] = np.nan
    keep_beads = seen.sum(axis=1) >= 3
    if keep_beads.sum() < 3:
        raise InputError(source, f"only {int(keep_beads.sum())} beads were tracked in 3 or more tilts; "
                                 "fiducial alignment needs at least 3 (check the bead diameter, or use the "
                                 "cross-correlation fallback)")  # fmt: skip
    ny, nx = int(image_shape[0]), int(image_shape[1])
    centre = np.array([nx // 2, ny // 2], dtype=np.float64)
    ref = int(np.argmin(np.abs(angles)))
    nb_all = obs.shape[0]
    active = np.flatnonzero(keep_beads)
    can_empty = fallback_shifts_px is not None  # rejections may leave a tilt without observations
    rejected: list[int] = [int(b) for b in np.flatnonzero(~keep_beads)]
    point_mask = seen.copy()

    def fit(bead_idx, x_prev=None):
        o = np.where(point_mask[bead_idx][..., None], obs[bead_idx], np.nan)
        model = _Model(o, angles, centre, ref, False, fit_magnification)
        if x_prev is None:
            beads0, shifts0 = _initial_guess(o, angles, centre, tilt_axis_angle_deg_initial, ref)
            x0 = model.pack(np.radians(tilt_axis_angle_deg_initial), 0.0, np.ones(len(angles)), shifts0, beads0)
        else:
            x0 = x_prev
        return model, _fit_once(model, x0, robust)

    def bead_means(model, x):
        res = np.linalg.norm(model.predict(x) - model.obs, axis=-1)
        return np.nanmean(np.where(model.mask, res, np.nan), axis=1)

    model, x = fit(active)  # Huber loss when robust: gross outliers do not drag the first fit
    robust = False  # later fits: plain least squares on the data that survive the rejections
    if robust_rejection:
        x = _fit_once(model, x, robust)
        while active.size > 4:
            m = bead_means(model, x)
            med = float(np.median(m))
            sig = _MAD_SIGMA * float(np.median(np.abs(m - med)))
            worst = int(np.argmax(m))
            if m[worst] <= med + max(rejection_mad_sigmas * sig, min_rejection_px):
                break
            if not can_empty and not np.delete(model.mask, worst, axis=0).any(axis=0)[model.observed].all():
                break  # the worst bead is the only one seen in some tilt
            rejected.append(int(active[worst]))
            keep = np.arange(active.size) != worst
            active = active[keep]
            psi, off, mag, shifts, beads = model.unpack(x)
            model = _Model(np.where(point_mask[active][..., None], obs[active], np.nan), angles, centre, ref,
                           False, fit_magnification)  # fmt: skip
            x = _fit_once(model, model.pack(psi, off, mag, shifts, beads[keep]), robust)
        res = np.linalg.norm(model.predict(x) - model.obs, axis=-1)
        r_ok = res[model.mask]
        limit = max(5 * _MAD_SIGMA * float(np.median(r_ok)), 3.0)
        bad = model.mask & (res > limit)
        if not can_empty:
            bad[:, ~(model.mask & ~bad).any(axis=0)] = False  # keep the last observations of a tilt
        if bad.any():
            sub = point_mask[active]
            sub[bad] = False
            point_mask[active] = sub
            psi, off, mag, shifts, beads = model.unpack(x)
            model = _Model(np.where(point_mask[active][..., None], obs[active], np.nan), angles, centre, ref,
                           False, fit_magnification)  # fmt: skip
            x = _fit_once(model, model.pack(psi, off, mag, shifts, beads), robust)
    psi, off, mag, shifts, beads = model.unpack(x)
    if fit_tilt_offset:
        off, beads = _level_beads(beads)
    t_fit = angles + np.degrees(off)
    observed = point_mask[active].any(axis=0)
    unobserved = np.flatnonzero(~observed)
    shifts, d = minimum_norm_gauge(shifts, t_fit, use=observed)
    beads = beads + d
    if unobserved.size:
        if fallback_shifts_px is None:
            raise InputError(source, f"no bead was observed in {unobserved.size} tilt(s) at "
                                     f"{', '.join(f'{a:g}' for a in angles[unobserved])}°, so their shifts are "
                                     "unknown; exclude these views (exclude_views) or check the bead tracking")  # fmt: skip
        fallback = np.asarray(fallback_shifts_px, dtype=np.float64)
        if fallback.shape != shifts.shape:
            raise ValueError(f"fallback_shifts_px must be {shifts.shape}, got {fallback.shape}")
        _, d_fb = minimum_norm_gauge(fallback - shifts, t_fit, use=observed)  # fallback + g(d_fb) ~ shifts
        t_rad = np.radians(t_fit[unobserved])
        shifts[unobserved, 0] = fallback[unobserved, 0] + d_fb[0] * np.cos(t_rad) + d_fb[2] * np.sin(t_rad)
        shifts[unobserved, 1] = fallback[unobserved, 1] + d_fb[1]
        shifts, d = minimum_norm_gauge(shifts, t_fit)
        beads = beads + d
    # full-size outputs: every bead (rejected ones placed by a least-squares fit against the final model)
    all_beads = np.full((nb_all, 3), np.nan)
    all_beads[active] = beads
    full = _Model(obs, angles, centre, ref, fit_tilt_offset, fit_magnification)
    x_full = full.pack(psi, off, mag, shifts, np.nan_to_num(all_beads))
    for b in rejected:
        ok = seen[b]
        if ok.sum() >= 2:
            all_beads_b = _fit_single_bead(obs[b], ok, t_fit, centre, psi, mag, shifts)
            x_full[full.i_p + 3 * b : full.i_p + 3 * b + 3] = all_beads_b
    residuals = full.predict(x_full) - obs
    residuals[~seen] = np.nan
    length = np.linalg.norm(residuals, axis=-1)
    kept = point_mask.copy()
    kept[rejected] = False
    per_bead = np.array([np.nanmean(length[b][seen[b]]) if seen[b].any() else np.nan for b in range(nb_all)])
    per_tilt = np.array([np.mean(length[kept[:, t], t]) if kept[:, t].any() else np.nan for t in range(angles.size)])
    out_beads = x_full[full.i_p :].reshape(nb_all, 3).copy()
    out_beads[[b for b in rejected if seen[b].sum() < 2]] = np.nan
    return {
        "tilt_axis_angle_deg": float(np.degrees(psi)),
        "tilt_angle_offset_deg": float(np.degrees(off)),
        "tilt_angles_deg": t_fit,
        "magnification": mag,
        "shifts": shifts,
        "bead_positions": out_beads,
        "residuals": residuals,
        "residual_per_bead": per_bead,
        "residual_per_tilt": per_tilt,
        "residual_rms_px": float(np.sqrt(np.mean(length[kept] ** 2))),
        "rejected_beads": sorted(rejected),
        "n_rejected_observations": int((seen & ~point_mask).sum()),
        "n_observations": int(kept.sum()),
        "unobserved_tilts": [int(i) for i in unobserved],
        "image_shape": (ny, nx),
        "method": "fiducial",
        "fallback": False,
    }


def _level_beads(beads):
    """Tilt offset (radians) that levels the beads' plane in X, and the beads rotated to match.

    ``u = X cos(t + a) + Z sin(t + a)`` equals ``X' cos t + Z' sin t`` for the
    beads rotated by ``a`` about Y, so a global offset cannot be fitted from
    the projections; it is chosen so that the least-squares plane
    ``Z = a_x X + a_y Y + b`` through the beads has ``a_x = 0`` (level specimen).
    """
    a = np.column_stack([beads[:, 0], beads[:, 1], np.ones(len(beads))])
    coef, *_ = np.linalg.lstsq(a, beads[:, 2], rcond=None)
    off = -float(np.arctan(coef[0]))
    c, s = np.cos(off), np.sin(off)
    x, z = beads[:, 0] * c - beads[:, 2] * s, beads[:, 0] * s + beads[:, 2] * c
    return off, np.column_stack([x, beads[:, 1], z])


def _fit_single_bead(obs_b, ok, t_deg, centre, psi, mag, shifts):
    """Least-squares (X, Y, Z) of one bead with the series parameters fixed."""
    t = np.radians(t_deg[ok])
    q = np.einsum("ij,tj->ti", _rot(-psi), (obs_b[ok] - centre) / mag[ok, None]) + shifts[ok]
    a = np.column_stack([np.cos(t), np.sin(t)])
    xz, *_ = np.linalg.lstsq(a, q[:, 0], rcond=None)
    return np.array([xz[0], float(np.mean(q[:, 1])), xz[1]])


def model_to_xf(result: dict) -> np.ndarray:
    """IMOD .xf rows (n_tilts, 6) of a fitted model: ``A = R(-psi) / m_t``, ``D = shifts``."""
    psi = np.radians(result["tilt_axis_angle_deg"])
    mag = np.asarray(result.get("magnification", np.ones(len(result["shifts"]))), dtype=np.float64)
    c, s = np.cos(psi) / mag, np.sin(psi) / mag
    return np.column_stack([c, s, -s, c, np.asarray(result["shifts"], dtype=np.float64)])


def format_alignment_report(result: dict, tilt_angles_deg, name: str = "") -> str:
    """Plain-text alignment report: psi, RMS, per-tilt and per-bead residuals, rejections."""
    angles = np.asarray(tilt_angles_deg, dtype=np.float64)
    lines = [f"# stasnake tilt-series alignment {name}".rstrip()]
    if result.get("fallback"):
        lines.append(f"method: {result.get('status', 'cross-correlation FALLBACK')}")
        lines.append(f"tilt_axis_angle_deg: {result['tilt_axis_angle_deg']:.3f} (from the metadata)")
    else:
        lines += [
            "method: fiducial projection model (stasnake.tilt.align_model)",
            f"tilt_axis_angle_deg: {result['tilt_axis_angle_deg']:.3f}",
            f"tilt_angle_offset_deg: {result['tilt_angle_offset_deg']:.3f}",
            f"residual_rms_px: {result['residual_rms_px']:.3f}",
            f"beads: {len(result['residual_per_bead'])} tracked, {len(result['rejected_beads'])} rejected "
            f"{result['rejected_beads']}; {result['n_observations']} observations used, "
            f"{result['n_rejected_observations']} single observations rejected",
        ]
        unobserved = result.get("unobserved_tilts", [])
        if unobserved:
            lines.append(f"tilts without bead observations (shifts from the fallback): "
                         f"{', '.join(f'{angles[i]:g}' for i in unobserved)} deg")  # fmt: skip
    shifts = np.asarray(result["shifts"])
    lines.append("")
    lines.append("tilt  angle_deg      DX_px      DY_px  mean_residual_px")
    per_tilt = result.get("residual_per_tilt", np.full(angles.size, np.nan))
    for i in np.argsort(angles, kind="stable"):
        lines.append(f"{i:4d} {angles[i]:10.2f} {shifts[i, 0]:10.3f} {shifts[i, 1]:10.3f} {per_tilt[i]:17.3f}")
    if not result.get("fallback"):
        lines.append("")
        lines.append("bead        X_px       Y_px       Z_px  mean_residual_px  status")
        rej = set(result["rejected_beads"])
        for b, (p, r) in enumerate(zip(result["bead_positions"], result["residual_per_bead"], strict=True)):
            lines.append(f"{b:4d} {p[0]:10.2f} {p[1]:10.2f} {p[2]:10.2f} {r:17.3f}  {'rejected' if b in rej else 'used'}")
    return "\n".join(lines) + "\n"


def write_alignment_report(path, result: dict, tilt_angles_deg, name: str = "") -> None:
    """Write :func:`format_alignment_report` to ``path`` atomically."""
    write_text_atomic(path, format_alignment_report(result, tilt_angles_deg, name))
