"""CTF correction of tilt images by phase flipping.

Each aligned tilt image is multiplied in Fourier space by the sign of
``-CTF`` (``stasnake.tilt.ctf`` convention: CTF < 0 at low frequency under
underfocus), so every band gets the sign of the lowest frequencies and the
microscope contrast is kept (protein stays dark, as IMOD's ctfphaseflip does).

This version uses one defocus per tilt image (the value at the tilt axis);
strip-based flipping along the defocus gradient of tilted images replaces it
in the tilt-series issue.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.fft

from stasnake.tilt.ctf import ctf_2d


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
    """Per-view defocus in Å from a :func:`stasnake.io.imod.read_defocus` table.

    Rows covering view ranges are expanded to one row per view (1-based view
    numbers become 0-based positions); a missing second defocus means no
    astigmatism.
    """
    rows = []
    for r in table.itertuples(index=False):
        d1 = float(r.defocus1_nm) * 10.0
        d2 = float(r.defocus2_nm) * 10.0 if np.isfinite(r.defocus2_nm) else d1
        angle = float(r.astigmatism_angle_deg) if np.isfinite(r.astigmatism_angle_deg) else 0.0
        for view in range(int(r.view_start), int(r.view_end) + 1):
            rows.append({"view": view - 1, "defocus_u_angstrom": d1, "defocus_v_angstrom": d2, "astigmatism_angle_deg": angle})
    return pd.DataFrame(rows).drop_duplicates("view", keep="last").sort_values("view").reset_index(drop=True)
