"""Tilt-series simulation: acquisition order, projection, CTF, dose, noise and raw-image warps.

Image formation per tilt (aligned frame, tilt axis along y): projection of the
specimen split into beam-height slabs -> per slab the CTF at the local defocus
``dF_tilt - h * pixel`` (Å, positive underfocus; h toward the source) -> sum ->
Grant-Grigorieff attenuation for the tilt's pre-exposure -> weak-phase image
``I = dose_px * exp(-t_ice / (mfp cos t)) * (1 + c * f)`` where f is the
CTF-filtered projection (negative for protein at underfocus: protein dark) and
the contrast scale c is set from the requested SNR -> warp into the raw frame
with the true .xf, ``raw(x_raw) = I(c0 + A (x_raw - c0) + D)`` -> Poisson noise.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy import ndimage

from stasnake.synth.config import SynthConfig
from stasnake.tilt.ctf import ctf_2d
from stasnake.tilt.dose import dose_filter
from stasnake.tilt.project import height_bin_centres, project_volume

_TILT_CHUNK = 8


def tilt_angles(config: SynthConfig) -> np.ndarray:
    """Sorted tilt angles (degrees) from min to max in steps, shape (n,)."""
    n = int(round((config.tilt_max_deg - config.tilt_min_deg) / config.tilt_step_deg)) + 1
    return np.round(config.tilt_min_deg + config.tilt_step_deg * np.arange(n), 6)


def acquisition_order(tilt_angles_deg, scheme: str = "dose-symmetric", group: int = 2) -> np.ndarray:
    """Indices into sorted ``tilt_angles_deg`` in acquisition order.

    Parameters
    ----------
    tilt_angles_deg : array_like
        Sorted tilt angles, degrees.
    scheme : {"dose-symmetric", "bidirectional", "unidirectional"}
        Dose-symmetric (Hagen et al. 2017, doi:10.1016/j.jsb.2016.06.007):
        start at the angle closest to 0, then alternate sides in groups of
        ``group`` tilts, the first group (positive side) counting the start
        tilt (SerialEM: 0, +3, -3, -6, +6, +9, -9, ... for group 2).
        Bidirectional: from the start angle up to the maximum, then from
        below the start down to the minimum. Unidirectional: minimum to maximum.
    group : int
        Group size of the dose-symmetric scheme.

    Returns
    -------
    np.ndarray
        int64 permutation, shape (n,).
    """
    a = np.asarray(tilt_angles_deg, dtype=np.float64)
    n = a.size
    if scheme == "unidirectional":
        return np.arange(n)
    start = int(np.argmin(np.abs(a)))
    pos = list(range(start + 1, n))
    neg = list(range(start - 1, -1, -1))
    if scheme == "bidirectional":
        return np.array([start] + pos + neg, dtype=np.int64)
    if scheme != "dose-symmetric":
        raise ValueError(f"unknown tilt scheme {scheme!r}")
    order = [start]
    take, side = group - 1, 0
    while pos or neg:
        src = (pos, neg)[side] if (pos, neg)[side] else (pos, neg)[1 - side]
        order += src[:take]
        del src[:take]
        take, side = group, 1 - side
    return np.array(order, dtype=np.int64)


def xf_matrices(psi_deg: float, shifts_px: np.ndarray) -> np.ndarray:
    """IMOD .xf rows (n, 6): A = R(-psi) = [[cos, sin], [-sin, cos]] and shifts D (px)."""
    p = np.radians(psi_deg)
    c, s = np.cos(p), np.sin(p)
    n = len(shifts_px)
    xf = np.column_stack([np.full(n, c), np.full(n, s), np.full(n, -s), np.full(n, c), shifts_px[:, 0], shifts_px[:, 1]])
    xf[:, :4] = np.round(xf[:, :4], 7)  # exactly what IMOD's fixed-width .xf holds
    xf[:, 4:] = np.round(xf[:, 4:], 3)
    return xf


def aligned_to_raw(image: np.ndarray, xf_row: np.ndarray, cval: float) -> np.ndarray:
    """Raw image from an aligned one: ``raw(x_raw) = ali(c + A (x_raw - c) + D)``, c = (nx // 2, ny // 2).

    Cubic-spline interpolation; (row, column) = (y, x) index order.
    """
    ny, nx = image.shape
    a = np.array([[xf_row[0], xf_row[1]], [xf_row[2], xf_row[3]]])
    c = np.array([nx // 2, ny // 2], dtype=np.float64)
    off_xy = c - a @ c + xf_row[4:6]
    m_rc = np.array([[a[1, 1], a[1, 0]], [a[0, 1], a[0, 0]]])
    return ndimage.affine_transform(image, m_rc, offset=off_xy[::-1], order=3, mode="constant", cval=cval)


def raw_to_aligned(image: np.ndarray, xf_row: np.ndarray, cval: float) -> np.ndarray:
    """Inverse of :func:`aligned_to_raw`: ``ali(x) = raw(c + A^-1 (x - c - D))``."""
    a = np.array([[xf_row[0], xf_row[1]], [xf_row[2], xf_row[3]]])
    ainv = np.linalg.inv(a)
    d = -ainv @ xf_row[4:6]
    return aligned_to_raw(image, np.array([ainv[0, 0], ainv[0, 1], ainv[1, 0], ainv[1, 1], d[0], d[1]]), cval)


def _filtered_projections(specimen, angles, defocus_u, defocus_v, astig_deg, pre_exposure, config):
    """CTF- and dose-filtered projections, (n, ny, nx) float32, aligned frame."""
    px = config.pixel_size_angstrom
    nz, ny, nx = specimen.shape
    hmax = 0.5 * np.hypot(nx, nz) + 1
    n_bins = max(1, int(np.ceil(2 * hmax * px / config.height_bin_angstrom)))
    h = height_bin_centres(n_bins, (-hmax, hmax))
    ice_px = config.ice_thickness / px
    out = np.empty((len(angles), ny, nx), dtype=np.float32)
    for s in range(0, len(angles), _TILT_CHUNK):
        proj = project_volume(specimen, angles[s : s + _TILT_CHUNK], n_height_bins=n_bins, height_range=(-hmax, hmax))
        if n_bins == 1:
            proj = proj[:, None]
        spectra = scipy.fft.rfft2(proj, workers=-1)
        for j in range(proj.shape[0]):
            i = s + j
            total = np.zeros(spectra.shape[-2:], dtype=np.complex128)
            for b in range(n_bins):
                ctf = ctf_2d((ny, nx), px, defocus_u[i] - h[b] * px, defocus_v[i] - h[b] * px, astig_deg,
                             config.voltage_kv, config.cs_mm, config.amplitude_contrast)  # fmt: skip
                total += spectra[j, b] * ctf
            # ice: an infinite slab projects to a constant; the CTF at k = 0 is -A
            total[0, 0] += -config.amplitude_contrast * config.ice_density * ice_px / np.cos(np.radians(angles[i])) * ny * nx
            total *= dose_filter((ny, nx), px, pre_exposure[i], config.dose_per_tilt_e_per_A2, voltage_kv=config.voltage_kv)
            out[i] = scipy.fft.irfft2(total, s=(ny, nx), workers=-1)
    return out


def simulate_tiltseries(specimen: np.ndarray, config: SynthConfig, rng: np.random.Generator) -> dict:
    """Simulate one tilt series of a specimen volume.

    Parameters
    ----------
    specimen : np.ndarray
        (nz, ny, nx) float32 specimen density without the ice slab, protein-positive.
    config : SynthConfig
        Imaging parameters.
    rng : np.random.Generator
        Random source (defocus, shifts, noise).

    Returns
    -------
    dict
        ``tilt_angles_deg`` (n,) sorted; ``order`` (n,) sorted indices in
        acquisition order; ``acquisition_index`` (n,) per sorted tilt;
        ``pre_exposure`` (n,) e/Å² per sorted tilt; ``defocus_u``/``defocus_v``
        (n,) Å and ``astigmatism_angle_deg``; ``xf`` (n, 6) sorted;
        ``raw`` (n, ny, nx) float32 noisy raw stack in ACQUISITION order;
        ``raw_noise_free`` the same without noise; ``aligned_noise_free``
        (n, ny, nx) sorted noise-free aligned images; ``contrast``,
        ``snr_measured`` (first image), ``defocus_angstrom`` (series).
    """
    px = config.pixel_size_angstrom
    nz, ny, nx = specimen.shape
    angles = tilt_angles(config)
    n = angles.size
    order = acquisition_order(angles, config.tilt_scheme, config.dose_symmetric_group)
    acq_index = np.empty(n, dtype=np.int64)
    acq_index[order] = np.arange(n)
    pre = acq_index * config.dose_per_tilt_e_per_A2
    df = rng.uniform(*config.defocus_range_um) * 1e4
    astig_deg = float(rng.uniform(0.0, 180.0))
    df_tilt = df + rng.normal(0.0, config.defocus_jitter_angstrom, n)
    dfu, dfv = df_tilt + config.astigmatism_angstrom / 2, df_tilt - config.astigmatism_angstrom / 2
    shifts = rng.normal(0.0, config.shift_rms_px, (n, 2))
    xf = xf_matrices(config.tilt_axis_angle_deg, shifts)
    f = _filtered_projections(specimen, angles, dfu, dfv, astig_deg, pre, config)
    dose_px = config.dose_per_tilt_e_per_A2 * px * px
    atten = dose_px * np.exp(-config.ice_thickness / (config.inelastic_mfp_angstrom * np.cos(np.radians(angles))))
    first = order[0]
    contrast = float(np.sqrt(config.snr / (atten[first] * max(float(np.var(f[first])), 1e-30))))
    aligned = (atten[:, None, None] * (1.0 + contrast * f)).astype(np.float32)
    raw_nf = np.empty_like(aligned)
    for k, i in enumerate(order):
        raw_nf[k] = aligned_to_raw(aligned[i], xf[i], cval=float(np.mean(aligned[i])))
    np.clip(raw_nf, 0.0, None, out=raw_nf)
    raw = rng.poisson(raw_nf).astype(np.float32)
    snr = float(np.var(raw_nf[0]) / np.var(raw[0] - raw_nf[0]))
    return {
        "tilt_angles_deg": angles, "order": order, "acquisition_index": acq_index, "pre_exposure": pre,
        "defocus_u": dfu, "defocus_v": dfv, "astigmatism_angle_deg": astig_deg, "defocus_angstrom": df,
        "xf": xf, "raw": raw, "raw_noise_free": raw_nf, "aligned_noise_free": aligned,
        "contrast": contrast, "max_contrast": float(contrast * np.abs(f).max()), "snr_measured": snr,
    }  # fmt: skip
