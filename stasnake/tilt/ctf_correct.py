"""CTF correction of tilt images by phase flipping.

Each aligned tilt image is multiplied in Fourier space by the sign of
``-CTF`` (``stasnake.tilt.ctf`` convention: CTF < 0 at low frequency under
underfocus), so every band gets the sign of the lowest frequencies and the
microscope contrast is kept (protein stays dark, as IMOD's ctfphaseflip does).

Two versions:

* :func:`phase_flip_image` / :func:`phase_flip_stack`: one defocus per tilt
  image (the value at the tilt axis);
* :func:`phase_flip_strips` / :func:`phase_flip_stack_strips`: the defocus
  gradient of tilted images is followed in strips parallel to the tilt axis
  (IMOD ctfphaseflip approach). In the ALIGNED image (tilt axis along image
  y) the defocus on the specimen mid-plane at ``U`` pixels from the image
  centre along x is ``dF(U) = dF_tilt + U tan(t) pixel`` (docs/conventions.md:
  the +U side is more underfocused at positive tilt). Each strip is flipped
  with the defocus at its centre, inside a window that extends beyond the
  strip by at least the CTF delocalisation and is tapered at its ends; only
  the central strip is kept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.fft

from stasnake.io.ctffind import IMOD_ASTIGMATISM_ANGLE_OFFSET_DEG
from stasnake.tilt.ctf import ctf_2d, electron_wavelength_angstrom

DEFAULT_DEFOCUS_TOLERANCE_ANGSTROM = 200.0
_MIN_STRIP_WIDTH_PX = 4


def phase_flip_image(
    image: np.ndarray,
    pixel_size_angstrom: float,
    defocus_u_angstrom: float,
    defocus_v_angstrom: float,
    astigmatism_angle_deg: float,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    workers: int = 1,
) -> np.ndarray:
    """Phase-flip one image.

    Parameters
    ----------
    image : np.ndarray
        (ny, nx) tilt image.
    pixel_size_angstrom : float
        Pixel size in Å.
    defocus_u_angstrom, defocus_v_angstrom : float
        Defocus along the major / minor axis in Å (positive = underfocus).
    astigmatism_angle_deg : float
        Angle of the U axis from the image x axis, counter-clockwise (CTFFIND).
    voltage_kv, cs_mm, amplitude_contrast : float
        Optics (kV, mm, fraction).
    workers : int
        Threads for scipy.fft.

    Returns
    -------
    np.ndarray
        (ny, nx) float32 image with the same mean.
    """
    ctf = ctf_2d(image.shape, pixel_size_angstrom, defocus_u_angstrom, defocus_v_angstrom,
                 astigmatism_angle_deg, voltage_kv, cs_mm, amplitude_contrast, rfft=True)  # fmt: skip
    flip = np.where(ctf > 0, -1.0, 1.0)
    flip[0, 0] = 1.0
    spectrum = scipy.fft.rfft2(np.asarray(image, dtype=np.float32), workers=workers)
    return scipy.fft.irfft2(spectrum * flip, s=image.shape, workers=workers).astype(np.float32)


def phase_flip_stack(
    stack: np.ndarray,
    pixel_size_angstrom: float,
    defocus: pd.DataFrame,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    workers: int = 1,
) -> np.ndarray:
    """Phase-flip every image of an aligned stack with its own defocus.

    Parameters
    ----------
    stack : np.ndarray
        (n_tilts, ny, nx) aligned stack.
    pixel_size_angstrom : float
        Pixel size in Å.
    defocus : pd.DataFrame
        One row per tilt of ``stack`` with ``defocus_u_angstrom``,
        ``defocus_v_angstrom``, ``astigmatism_angle_deg``.
    voltage_kv, cs_mm, amplitude_contrast : float
        Optics (kV, mm, fraction).
    workers : int
        Threads for scipy.fft.

    Returns
    -------
    np.ndarray
        (n_tilts, ny, nx) float32.
    """
    if len(defocus) != stack.shape[0]:
        raise ValueError(f"{len(defocus)} defocus rows for {stack.shape[0]} tilts")
    out = np.empty(stack.shape, dtype=np.float32)
    for i, row in enumerate(defocus.itertuples(index=False)):
        out[i] = phase_flip_image(stack[i], pixel_size_angstrom, row.defocus_u_angstrom, row.defocus_v_angstrom,
                                  row.astigmatism_angle_deg, voltage_kv, cs_mm, amplitude_contrast, workers)  # fmt: skip
    return out


def defocus_from_imod(table: pd.DataFrame) -> pd.DataFrame:
    """Per-view defocus in Å, CTFFIND angle convention, from a :func:`stasnake.io.imod.read_defocus` table.

    Rows covering view ranges are expanded to one row per view (1-based view
    numbers become 0-based positions); a missing second defocus means no
    astigmatism. The IMOD angle is converted with
    :data:`stasnake.io.ctffind.IMOD_ASTIGMATISM_ANGLE_OFFSET_DEG` (inverse of
    :func:`stasnake.io.ctffind.ctf_table_to_imod_defocus`).
    """
    rows = []
    for r in table.itertuples(index=False):
        d1 = float(r.defocus1_nm) * 10.0
        d2 = float(r.defocus2_nm) * 10.0 if np.isfinite(r.defocus2_nm) else d1
        angle = float(r.astigmatism_angle_deg) if np.isfinite(r.astigmatism_angle_deg) else IMOD_ASTIGMATISM_ANGLE_OFFSET_DEG
        angle = (angle - IMOD_ASTIGMATISM_ANGLE_OFFSET_DEG) % 180.0
        for view in range(int(r.view_start), int(r.view_end) + 1):
            rows.append({"view": view - 1, "defocus_u_angstrom": d1, "defocus_v_angstrom": d2, "astigmatism_angle_deg": angle})
    return pd.DataFrame(rows).drop_duplicates("view", keep="last").sort_values("view").reset_index(drop=True)


def strip_width_for_tolerance(
    tilt_angle_deg: float,
    pixel_size_angstrom: float,
    image_width_px: int,
    defocus_tolerance_angstrom: float = DEFAULT_DEFOCUS_TOLERANCE_ANGSTROM,
) -> int:
    """Widest strip (pixels along x) over which the defocus changes by at most the tolerance.

    ``width = tolerance / (pixel * |tan t|)``, rounded down, at least 4 px and
    at most ``image_width_px`` (a single strip: the whole image, e.g. at t = 0).

    Parameters
    ----------
    tilt_angle_deg : float
        Tilt angle, degrees.
    pixel_size_angstrom : float
        Pixel size in Å.
    image_width_px : int
        Image width nx in pixels (the cap).
    defocus_tolerance_angstrom : float
        Largest defocus change across one strip, Å.

    Returns
    -------
    int
        Strip width in pixels.
    """
    if defocus_tolerance_angstrom <= 0:
        raise ValueError(f"defocus_tolerance_angstrom must be positive, got {defocus_tolerance_angstrom}")
    gradient = pixel_size_angstrom * abs(np.tan(np.radians(tilt_angle_deg)))  # Å of defocus per pixel
    nx = int(image_width_px)
    if gradient * nx <= defocus_tolerance_angstrom:
        return nx
    return int(min(nx, max(_MIN_STRIP_WIDTH_PX, np.floor(defocus_tolerance_angstrom / gradient))))


def delocalization_px(pixel_size_angstrom: float, defocus_angstrom: float, voltage_kv: float = 300.0,
                      cs_mm: float = 2.7) -> float:
    """Largest CTF delocalisation up to Nyquist, pixels.

    A feature at spatial frequency k is displaced by
    ``|dchi/dk| / (2 pi) = |lambda dF k - Cs lambda^3 k^3|`` (Å); the maximum
    over ``0 <= k <= 1 / (2 pixel)``, divided by the pixel size.
    """
    lam = electron_wavelength_angstrom(voltage_kv)
    k = np.linspace(0.0, 0.5 / pixel_size_angstrom, 257)
    shift = np.abs(lam * abs(defocus_angstrom) * k - cs_mm * 1e7 * lam**3 * k**3)
    return float(shift.max() / pixel_size_angstrom)


def _cosine_taper(n_flat: int, n_edge: int) -> np.ndarray:
    """1-D window: ``n_edge`` rising half-cosine, ``n_flat`` ones, ``n_edge`` falling."""
    edge = 0.5 - 0.5 * np.cos(np.pi * (np.arange(n_edge) + 0.5) / n_edge) if n_edge else np.zeros(0)
    return np.concatenate([edge, np.ones(n_flat), edge[::-1]])


def phase_flip_strips(
    image: np.ndarray,
    pixel_size_angstrom: float,
    defocus_u_angstrom: float,
    defocus_v_angstrom: float,
    astigmatism_angle_deg: float,
    tilt_angle_deg: float,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    strip_width_px: int | None = None,
    defocus_tolerance_angstrom: float = DEFAULT_DEFOCUS_TOLERANCE_ANGSTROM,
    window_px: int | None = None,
    workers: int = 1,
) -> np.ndarray:
    """Phase-flip an aligned tilt image in strips that follow the defocus gradient.

    The image is cut into strips of ``strip_width_px`` columns (parallel to
    the tilt axis, image y). A strip centred ``U`` pixels from the image
    centre (column ``nx // 2``) is flipped with the mid-plane defocus
    ``dF(U) = dF + U tan(t) pixel`` (added to both ``defocus_u`` and
    ``defocus_v``; docs/conventions.md). By default (``window_px=None``) each
    strip is cut from the whole image flipped with the strip's defocus (as
    IMOD ctfphaseflip does): exact, one full-size inverse FFT per strip.
    With ``window_px`` the flip is computed on a full-height window of that
    many columns centred on the strip (read with periodic wrap, mean removed,
    cosine taper over a quarter of the margin at each end, zero-padded to a
    fast FFT length) -- faster on large images but approximate: the kernel of
    ``sign(CTF)`` contains the odd harmonics of the CTF phase, so its tails
    reach several times the CTF delocalisation
    (:func:`delocalization_px`); on white noise at 2.7 Å/px and 3 µm, a
    16-column strip in a 136-column window differs from the exact flip by
    about 40 % RMS. When one strip covers the image (``|t|`` small, e.g. 0)
    the result equals :func:`phase_flip_image` with the defocus at the centre.

    Parameters
    ----------
    image : np.ndarray
        (ny, nx) ALIGNED tilt image (tilt axis along y).
    pixel_size_angstrom : float
        Pixel size in Å.
    defocus_u_angstrom, defocus_v_angstrom : float
        Defocus on the tilt axis (image centre column), Å, positive = underfocus.
    astigmatism_angle_deg : float
        Angle of the U axis from the image x axis, counter-clockwise (CTFFIND).
    tilt_angle_deg : float
        Tilt angle of the image, degrees (sign as in the mdoc/.tlt).
    voltage_kv, cs_mm, amplitude_contrast : float
        Optics (kV, mm, fraction).
    strip_width_px : int, optional
        Strip width in pixels; default :func:`strip_width_for_tolerance`
        (defocus change across a strip <= ``defocus_tolerance_angstrom``).
    defocus_tolerance_angstrom : float
        Tolerance used for the default strip width, Å.
    window_px : int, optional
        Width of the local window (see above); None = the whole image.
    workers : int
        Threads for scipy.fft.

    Returns
    -------
    np.ndarray
        (ny, nx) float32 flipped image (protein stays dark).
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise ValueError(f"image must be (ny, nx), got shape {image.shape}")
    ny, nx = image.shape
    optics = (voltage_kv, cs_mm, amplitude_contrast)
    if strip_width_px is None:
        width = strip_width_for_tolerance(tilt_angle_deg, pixel_size_angstrom, nx, defocus_tolerance_angstrom)
    else:
        width = int(strip_width_px)
        if width < 1:
            raise ValueError(f"strip_width_px must be positive, got {strip_width_px}")
    if width >= nx:
        return phase_flip_image(image, pixel_size_angstrom, defocus_u_angstrom, defocus_v_angstrom,
                                astigmatism_angle_deg, *optics, workers=workers)  # fmt: skip
    slope = np.tan(np.radians(tilt_angle_deg)) * pixel_size_angstrom  # Å of defocus per pixel of U
    n_strips = int(np.ceil(nx / width))
    edges = np.round(np.linspace(0, nx, n_strips + 1)).astype(int)
    out = np.empty_like(image)
    spectrum = None
    for x0, x1 in zip(edges[:-1], edges[1:], strict=True):
        offset = ((x0 + x1 - 1) / 2.0 - nx // 2) * slope
        du, dv = defocus_u_angstrom + offset, defocus_v_angstrom + offset
        n_strip = x1 - x0
        if window_px is None or int(window_px) >= nx:  # flip the whole (periodic) image, keep the strip
            if spectrum is None:
                spectrum = scipy.fft.rfft2(image, workers=workers)
            ctf = ctf_2d((ny, nx), pixel_size_angstrom, du, dv, astigmatism_angle_deg, *optics, rfft=True)
            flip = np.where(ctf > 0, -1.0, 1.0)
            flip[0, 0] = 1.0
            out[:, x0:x1] = scipy.fft.irfft2(spectrum * flip, s=(ny, nx), workers=workers)[:, x0:x1]
            continue
        pad = max(8, (int(window_px) - n_strip + 1) // 2)
        taper_px = max(4, pad // 4)
        n_window = n_strip + 2 * pad
        columns = np.arange(x0 - pad, x1 + pad) % nx  # periodic, as a whole-image FFT sees the image
        window = image[:, columns]
        mean = float(window.mean())
        weights = _cosine_taper(n_window - 2 * taper_px, taper_px).astype(np.float32)
        n_fft = scipy.fft.next_fast_len(n_window, real=True)
        padded = np.zeros((ny, n_fft), dtype=np.float32)
        padded[:, :n_window] = (window - mean) * weights
        ctf = ctf_2d((ny, n_fft), pixel_size_angstrom, du, dv, astigmatism_angle_deg, *optics, rfft=True)
        flip = np.where(ctf > 0, -1.0, 1.0).astype(np.float32)
        flipped = scipy.fft.irfft2(scipy.fft.rfft2(padded, workers=workers) * flip, s=(ny, n_fft), workers=workers)
        out[:, x0:x1] = flipped[:, pad : pad + n_strip] + mean
    return out


def phase_flip_stack_strips(
    stack: np.ndarray,
    pixel_size_angstrom: float,
    defocus_table: pd.DataFrame,
    tilt_angles_deg,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.1,
    strip_width_px: int | None = None,
    defocus_tolerance_angstrom: float = DEFAULT_DEFOCUS_TOLERANCE_ANGSTROM,
    window_px: int | None = None,
    workers: int = 1,
) -> np.ndarray:
    """Strip-based phase flip (:func:`phase_flip_strips`) of every image of an aligned stack.

    Parameters
    ----------
    stack : np.ndarray
        (n_tilts, ny, nx) ALIGNED stack (tilt axis along y).
    pixel_size_angstrom : float
        Pixel size in Å.
    defocus_table : pd.DataFrame
        One row per tilt of ``stack`` with ``defocus_u_angstrom``,
        ``defocus_v_angstrom``, ``astigmatism_angle_deg`` (defocus on the tilt
        axis, Å).
    tilt_angles_deg : array_like
        (n_tilts,) tilt angles in degrees, stack order.
    voltage_kv, cs_mm, amplitude_contrast : float
        Optics (kV, mm, fraction).
    strip_width_px : int, optional
        Fixed strip width; default from ``defocus_tolerance_angstrom`` per tilt.
    defocus_tolerance_angstrom : float
        Largest defocus change across a strip, Å.
    window_px : int, optional
        Local window width (approximate, faster); None = whole image (exact).
    workers : int
        Threads for scipy.fft.

    Returns
    -------
    np.ndarray
        (n_tilts, ny, nx) float32.
    """
    angles = np.asarray(tilt_angles_deg, dtype=np.float64).ravel()
    if stack.ndim != 3:
        raise ValueError(f"stack must be (n_tilts, ny, nx), got shape {stack.shape}")
    if len(defocus_table) != stack.shape[0] or angles.size != stack.shape[0]:
        raise ValueError(f"{len(defocus_table)} defocus rows and {angles.size} tilt angles for {stack.shape[0]} tilts")
    out = np.empty(stack.shape, dtype=np.float32)
    for i, row in enumerate(defocus_table.itertuples(index=False)):
        out[i] = phase_flip_strips(stack[i], pixel_size_angstrom, row.defocus_u_angstrom, row.defocus_v_angstrom,
                                   row.astigmatism_angle_deg, angles[i], voltage_kv, cs_mm, amplitude_contrast,
                                   strip_width_px=strip_width_px, defocus_tolerance_angstrom=defocus_tolerance_angstrom,
                                   window_px=window_px, workers=workers)  # fmt: skip
    return out
