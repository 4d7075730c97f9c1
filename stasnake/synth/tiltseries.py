"""Tilt-series simulation: acquisition order, projection, CTF, dose, noise and raw-image warps.

Image formation per tilt (aligned frame, tilt axis along y): projection of the
specimen split into beam-height slabs -> per slab the CTF at the local defocus
``dF_tilt - h * pixel`` (Å, positive underfocus; h toward the source) -> sum ->
Grant-Grigorieff attenuation for the tilt's pre-exposure -> weak-phase image
``I = dose_px * exp(-t_ice / (mfp cos t)) * (1 + c * f)`` where f is the
CTF-filtered projection (negative for protein at underfocus: protein dark) and
the contrast scale c is set from the requested SNR -> warp into the raw frame
with the true .xf, ``raw(x_raw) = I(c0 + A (x_raw - c0) + D)`` -> Poisson noise.

**Amorphous-ice texture.** Vitreous ice is not a constant slab: its density
fluctuations make it a weak random phase object whose CTF-filtered image
carries Thon rings over the whole field of view (the rings that CTF
estimation fits on real tilt images, also between particles and at late,
damaged tilts). Each tilt gets its own texture ``g`` (relative intensity,
added to ``c * f``): per height slab, a Gaussian phase field with the
physical power spectrum of water (flat at these resolutions, see
:func:`ice_phase_psd`), its thickness the length of the ice slab in that slab
at each image column, filtered by the slab's CTF; ``g = 2 sum CTF * phi``
(weak-phase image). It is not dose filtered: radiolysis rearranges the ice
but leaves it amorphous, so the power of its texture does not fade, unlike
the coherent specimen signal (Grant & Grigorieff). Projections of a random
slab of thickness T at tilts 3 degrees apart are uncorrelated beyond
~1/(T * 0.05 rad) ~ 1/40 Å, so independent textures per tilt are exact in
the band that matters. ``c`` is set from the specimen alone, so the
specimen's SNR is as requested; the measured whole-image SNR includes the ice.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
from scipy import ndimage

from stasnake.synth.config import SynthConfig
from stasnake.tilt.ctf import ctf_2d, electron_wavelength_angstrom, frequency_grid
from stasnake.tilt.dose import dose_filter
from stasnake.tilt.project import height_bin_centres, project_volume

_TILT_CHUNK = 8

#: Vitreous ice: water molecules per Å^3 (0.94 g/cm^3).
ICE_MOLECULES_PER_A3 = 0.0314
#: Electron scattering amplitude of one H2O molecule at small angles, Å: the sum of the
#: neutral-atom amplitudes f_e(0) of O (1.98 Å) and 2 H (0.53 Å) (Peng et al. 1996,
#: Acta Cryst A52:257, sums of the a_i). Its potential integral, 47.878 V Å^2 x 3.04 Å,
#: times the density gives a mean inner potential of 4.6 V (measured for water: 4.48 V,
#: Yesibolati et al. 2020, Phys Rev Lett 124:065502).
WATER_SCATTERING_AMPLITUDE_ANGSTROM = 3.04
#: Structure factor of water at small scattering vector, S(q -> 0) = rho k_B T kappa_T
#: = 0.064 at 273 K (isothermal compressibility 5.08e-10 1/Pa). S(q) stays within
#: about +-30 % of it for d > 6 Å, so the texture is white over the fitted band.
WATER_STRUCTURE_FACTOR = 0.064
_H2_OVER_2PI_M0_E = 47.878  # V Å^2: potential integral per Å of electron scattering amplitude


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


def interaction_constant(voltage_kv: float) -> float:
    """Electron interaction constant sigma, rad / (V Å): ``2 pi / (lambda V) (m c^2 + eV) / (2 m c^2 + eV)``."""
    mc2_kev = 510.99895
    lam = electron_wavelength_angstrom(voltage_kv)
    return float(2 * np.pi / (lam * voltage_kv * 1e3) * (mc2_kev + voltage_kv) / (2 * mc2_kev + voltage_kv))


def ice_phase_psd(thickness_angstrom: float, voltage_kv: float = 300.0) -> float:
    """Power spectral density of the phase of an amorphous-ice layer, rad^2 Å^2 (flat in k).

    ``rho T (sigma 47.878 f_H2O)^2 S``: molecules per area times the squared
    phase integral of one molecule times the structure factor (module
    constants). For 734 Å of ice at 300 kV: 0.013 rad^2 Å^2; its image,
    ``4 CTF^2`` times this, is 13 % of the shot-noise power at 3 e/Å² at the
    CTF maxima.
    """
    phi = interaction_constant(voltage_kv) * _H2_OVER_2PI_M0_E * WATER_SCATTERING_AMPLITUDE_ANGSTROM
    return float(ICE_MOLECULES_PER_A3 * thickness_angstrom * phi**2 * WATER_STRUCTURE_FACTOR)


def _ice_slab_lengths(nx: int, angle_deg: float, thickness_px: float, h_centres, h_width: float) -> np.ndarray:
    """Length (px) of the ice slab ``|Z| <= T/2`` inside each height bin, per aligned image column, (n_bins, nx).

    Along the beam through column ``U`` the ice spans heights
    ``h in [(-T/2 - U sin t) / cos t, (T/2 - U sin t) / cos t]`` (``Z = U sin t + h cos t``).
    """
    t = np.radians(angle_deg)
    u = np.arange(nx) - nx // 2
    lo = (-0.5 * thickness_px - u * np.sin(t)) / np.cos(t)
    hi = (0.5 * thickness_px - u * np.sin(t)) / np.cos(t)
    h = np.asarray(h_centres, dtype=np.float64)[:, None]
    return np.clip(np.minimum(hi, h + 0.5 * h_width) - np.maximum(lo, h - 0.5 * h_width), 0.0, None)


def ice_texture(shape, angle_deg: float, defocus_u: float, defocus_v: float, astig_deg: float, config: SynthConfig,
                h_origin_px: float, h_width_px: float, rng: np.random.Generator) -> np.ndarray:  # fmt: skip
    """CTF-filtered amorphous-ice phase texture of one tilt, relative intensity, (ny, nx) float32, aligned frame.

    The ice is the infinite slab ``|Z| <= T/2`` (``T = config.ice_thickness``),
    so every image column sees ``T / cos t`` of it, also where the rays leave
    the phantom box. It is cut into height bins ``h_origin + (k + 1/2) width``
    (px; the specimen's bins extended as far as the slab reaches), each a
    white Gaussian phase field of variance ``ice_phase_psd(L) / pixel^2``
    (``L`` its length in the bin at each column) filtered by the CTF at
    ``dF - h pixel``; ``g = 2 * sum CTF * phi``.
    """
    ny, nx = shape
    px = config.pixel_size_angstrom
    t = np.radians(angle_deg)
    thickness_px = config.ice_thickness / px
    reach = (0.5 * thickness_px + 0.5 * nx * abs(np.sin(t))) / np.cos(t) + 1.0
    k = np.arange(np.floor((-reach - h_origin_px) / h_width_px), np.ceil((reach - h_origin_px) / h_width_px) + 1)
    h = h_origin_px + (k + 0.5) * h_width_px
    lengths = _ice_slab_lengths(nx, angle_deg, thickness_px, h, h_width_px) * px  # Å
    amp = np.sqrt(ice_phase_psd(1.0, config.voltage_kv)) / px  # per-pixel phase std per sqrt(Å of ice)
    used = np.flatnonzero(lengths.any(axis=1))  # a contiguous run of bins
    # CTF of bin b = -(sqrt(1 - A^2) sin chi_b + A cos chi_b) = -Im(z_b), z_b = exp(i (chi_b + asin A)), with
    # chi_b = chi(dF) - pi lambda (h_b pixel) k^2 (ctf_2d's convention): successive bins differ by a constant factor
    lam = electron_wavelength_angstrom(config.voltage_kv)
    kx, ky = frequency_grid((ny, nx), px)
    k2 = kx**2 + ky**2
    ang = np.radians(astig_deg)
    h0 = h[used[0]] * px
    df = 0.5 * (defocus_u + defocus_v + (defocus_u - defocus_v) * np.cos(2.0 * (np.arctan2(ky, kx) - ang))) - h0
    chi = np.pi * lam * df * k2 - 0.5 * np.pi * config.cs_mm * 1e7 * lam**3 * k2**2
    z = np.exp(1j * (chi + np.arcsin(config.amplitude_contrast)))
    step = np.exp(-1j * np.pi * lam * h_width_px * px * (kx**2 + ky**2))
    total = np.zeros((ny, nx // 2 + 1), dtype=np.complex128)
    for b in range(used[0], used[-1] + 1):
        if lengths[b].any():
            phase = rng.standard_normal((ny, nx), dtype=np.float32) * (amp * np.sqrt(lengths[b])).astype(np.float32)[None, :]
            total += scipy.fft.rfft2(phase, workers=-1) * (-z.imag)
        z *= step
    return (2.0 * scipy.fft.irfft2(total, s=(ny, nx), workers=-1)).astype(np.float32)


def _filtered_projections(specimen, angles, defocus_u, defocus_v, astig_deg, pre_exposure, config, ice_rng=None):
    """CTF- and dose-filtered projections and ice textures, both (n, ny, nx) float32, aligned frame.

    The ice texture (:func:`ice_texture`) is zero when ``ice_rng`` is None.
    """
    px = config.pixel_size_angstrom
    nz, ny, nx = specimen.shape
    hmax = 0.5 * np.hypot(nx, nz) + 1
    n_bins = max(1, int(np.ceil(2 * hmax * px / config.height_bin_angstrom)))
    h = height_bin_centres(n_bins, (-hmax, hmax))
    ice_px = config.ice_thickness / px
    out = np.empty((len(angles), ny, nx), dtype=np.float32)
    ice = np.zeros((len(angles), ny, nx), dtype=np.float32)
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
            if ice_rng is not None:
                ice[i] = ice_texture((ny, nx), angles[i], defocus_u[i], defocus_v[i], astig_deg, config, -hmax,
                                     2 * hmax / n_bins, ice_rng)  # fmt: skip
    return out, ice


def simulate_tiltseries(specimen: np.ndarray, config: SynthConfig, rng: np.random.Generator,
                        add_ice_texture: bool = True) -> dict:  # fmt: skip
    """Simulate one tilt series of a specimen volume.

    Parameters
    ----------
    specimen : np.ndarray
        (nz, ny, nx) float32 specimen density without the ice slab, protein-positive.
    config : SynthConfig
        Imaging parameters.
    rng : np.random.Generator
        Random source (defocus, shifts, noise). The ice textures come from a
        child generator (``rng.spawn``), which does not advance ``rng``.
    add_ice_texture : bool
        Add the amorphous-ice phase texture (:func:`ice_texture`, module docstring).

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
        ``snr_measured`` (first image, specimen and ice; the specimen alone
        has ``config.snr``), ``snr_ice`` (variance of the ice texture over the
        shot noise, first image), ``defocus_angstrom`` (series).
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
    ice_rng = rng.spawn(1)[0] if add_ice_texture else None
    f, ice = _filtered_projections(specimen, angles, dfu, dfv, astig_deg, pre, config, ice_rng)
    dose_px = config.dose_per_tilt_e_per_A2 * px * px
    atten = dose_px * np.exp(-config.ice_thickness / (config.inelastic_mfp_angstrom * np.cos(np.radians(angles))))
    first = order[0]
    contrast = float(np.sqrt(config.snr / (atten[first] * max(float(np.var(f[first])), 1e-30))))
    aligned = (atten[:, None, None] * (1.0 + contrast * f + ice)).astype(np.float32)
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
        "snr_ice": float(atten[first] * np.var(ice[first])),
    }  # fmt: skip
