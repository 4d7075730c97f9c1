"""Contrast transfer function of a transmission electron microscope (2-D, astigmatic).

Conventions (CTFFIND4, Rohou & Grigorieff 2015, doi:10.1016/j.jsb.2015.08.008):

* defocus is positive for underfocus (Å);
* the astigmatism angle is the angle of the defocus-U axis measured from the
  image x axis (array columns), counter-clockwise, degrees;
* ``df(theta) = (dfU + dfV + (dfU - dfV) cos(2 (theta - angle))) / 2`` for a
  spatial-frequency vector at angle ``theta`` from the x axis;
* ``chi(k) = pi lambda df k^2 - pi/2 Cs lambda^3 k^4 + phase_shift``;
* ``CTF = -(sqrt(1 - A^2) sin(chi) + A cos(chi))``: negative at low frequency,
  so a protein-positive projection multiplied by the CTF gives dark protein
  (the image contrast at underfocus).

Frequency grids follow numpy's FFT layout (zero frequency at index 0), so the
result multiplies ``scipy.fft.rfft2`` (``rfft=True``, shape (ny, nx // 2 + 1))
or ``fft2`` (shape (ny, nx)) of an image of shape (ny, nx) directly.
"""

from __future__ import annotations

import numpy as np

_H = 6.62607015e-34  # Planck constant, J s
_M0 = 9.1093837015e-31  # electron rest mass, kg
_E = 1.602176634e-19  # elementary charge, C
_C = 299792458.0  # speed of light, m/s


def electron_wavelength_angstrom(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å for an accelerating voltage in kV.

    ``lambda = h / sqrt(2 m0 e V (1 + e V / (2 m0 c^2)))``; 0.01969 Å at 300 kV.
    """
    v = float(voltage_kv) * 1e3
    if v <= 0:
        raise ValueError(f"voltage_kv must be positive, got {voltage_kv}")
    p = np.sqrt(2.0 * _M0 * _E * v * (1.0 + _E * v / (2.0 * _M0 * _C**2)))
    return float(_H / p * 1e10)


def frequency_grid(shape, pixel_size_angstrom: float, rfft: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Spatial frequencies (kx, ky) in 1/Å on the FFT grid of an image.

    Parameters
    ----------
    shape : tuple of int
        Image shape (ny, nx).
    pixel_size_angstrom : float
        Pixel size in Å.
    rfft : bool
        Half grid (ny, nx // 2 + 1) of ``rfft2`` instead of the full (ny, nx).

    Returns
    -------
    kx, ky : np.ndarray
        Broadcast-ready arrays of shape (1, nkx) and (ny, 1), in 1/Å.
    """
    ny, nx = (int(s) for s in shape)
    fx = np.fft.rfftfreq(nx, d=pixel_size_angstrom) if rfft else np.fft.fftfreq(nx, d=pixel_size_angstrom)
    fy = np.fft.fftfreq(ny, d=pixel_size_angstrom)
    return fx[None, :], fy[:, None]


def ctf_2d(
    shape,
    pixel_size_angstrom: float,
    defocus_u_angstrom: float,
    defocus_v_angstrom: float,
    astigmatism_angle_deg: float,
    voltage_kv: float = 300,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    phase_shift_deg: float = 0,
    rfft: bool = True,
) -> np.ndarray:
    """2-D CTF on the FFT grid of an image (CTFFIND convention, see module docstring).

    Parameters
    ----------
    shape : tuple of int
        Image shape (ny, nx) in pixels.
    pixel_size_angstrom : float
        Pixel size in Å.
    defocus_u_angstrom, defocus_v_angstrom : float
        Defocus along the U and V axes in Å, positive = underfocus.
    astigmatism_angle_deg : float
        Angle of the U axis from the image x axis, counter-clockwise, degrees.
    voltage_kv : float
        Accelerating voltage in kV.
    cs_mm : float
        Spherical aberration in mm.
    amplitude_contrast : float
        Fraction of amplitude contrast A (0..1).
    phase_shift_deg : float
        Additional phase shift (phase plate) in degrees.
    rfft : bool
        Return the half grid (ny, nx // 2 + 1) for ``rfft2``; else (ny, nx).

    Returns
    -------
    np.ndarray
        float64 CTF values in [-1, 1], zero frequency at index [0, 0].
    """
    kx, ky = frequency_grid(shape, pixel_size_angstrom, rfft)
    theta = np.arctan2(ky, kx)
    ang = np.radians(astigmatism_angle_deg)
    df = 0.5 * (defocus_u_angstrom + defocus_v_angstrom
                + (defocus_u_angstrom - defocus_v_angstrom) * np.cos(2.0 * (theta - ang)))  # fmt: skip
    return ctf_1d(np.sqrt(kx**2 + ky**2), df, voltage_kv, cs_mm, amplitude_contrast, phase_shift_deg)


def ctf_1d(
    k_per_angstrom,
    defocus_angstrom,
    voltage_kv: float = 300,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    phase_shift_deg: float = 0,
) -> np.ndarray:
    """CTF at spatial frequencies ``|k|`` (1/Å) and defoci (Å, positive underfocus), broadcast together.

    The radial form of :func:`ctf_2d` (same convention), without astigmatism.
    """
    k2 = np.asarray(k_per_angstrom, dtype=np.float64) ** 2
    lam = electron_wavelength_angstrom(voltage_kv)
    cs = cs_mm * 1e7  # mm -> Å
    chi = np.pi * lam * np.asarray(defocus_angstrom) * k2 - 0.5 * np.pi * cs * lam**3 * k2**2 + np.radians(phase_shift_deg)
    a = float(amplitude_contrast)
    return -(np.sqrt(1.0 - a * a) * np.sin(chi) + a * np.cos(chi))
