"""Height (z) homogenisation of per-tomogram averages against a synthetic membrane (protocol step 6B).

Each tomogram's average is aligned to a synthetic membrane reference by a shift along the
average's z axis only (Dynamo ``dalign`` with a z limit of 20 pixels), and the shift is applied
to every particle of that tomogram's table (``dynamo_table_rigid``), so that all tomograms put
the unit cell at the same height in the box before they are merged.

Conventions: arrays (z, y, x), vectors (x, y, z), box centre index ``n // 2``. The shift ``dz``
returned by :func:`register_height` satisfies ``average(p + c + (0, 0, dz)) ~ reference(p + c)``:
a feature the reference has at height ``z`` sits at ``z + dz`` in the average. This is the
``(R_a = I, s_a = (0, 0, dz))`` of :func:`stasnake.sta.table_ops.rigid_transform`, so
:func:`apply_height_shift` moves each particle by ``R_i @ (0, 0, dz)`` (along its own z axis, in
tomogram pixels) and re-averaging the shifted table puts the membrane at the reference height.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.fft

from stasnake.sta.table_ops import rigid_transform

#: The protocol's ``dalign`` z limit (pixels).
PROTOCOL_MAX_SHIFT_PX = 20


def membrane_reference(
    box: int,
    pixel_size: float,
    leaflet_separation_angstrom: float = 38.0,
    sigma_angstrom: float = 6.0,
    z_centre_px: float | None = None,
    radius_angstrom: float | None = None,
    polarity: float = 1.0,
) -> np.ndarray:
    """Synthetic lipid bilayer: two Gaussian leaflets normal to z.

    Parameters
    ----------
    box : int
        Side of the cubic box in pixels.
    pixel_size : float
        Pixel size in Å.
    leaflet_separation_angstrom : float
        Distance between the two headgroup (leaflet) peaks, Å.
    sigma_angstrom : float
        Gaussian SD of each leaflet across the membrane, Å.
    z_centre_px : float, optional
        Height of the bilayer mid-plane on the box's central (x, y) column, as a z array index
        (pixels); default the box centre ``box // 2``.
    radius_angstrom : float, optional
        Radius of curvature of the membrane mid-plane (Å). The sphere's centre lies below the
        box (at ``z_centre - radius`` on the central column), i.e. the particle z axis is the
        outward normal, as for particles on a VLP. ``None``: flat.
    polarity : float
        +1: density positive (protein-bright, like :func:`stasnake.synth.unit.unit_map` and
        averages of contrast-inverted tomograms); -1 for dark-density (raw) contrast. Use the
        contrast of the averages being registered.

    Returns
    -------
    np.ndarray
        float32 (box, box, box) map (z, y, x), leaflet peaks of height ``polarity``.
    """
    n = int(box)
    zc = n // 2 if z_centre_px is None else float(z_centre_px)
    idx = np.arange(n, dtype=np.float64)
    half = 0.5 * float(leaflet_separation_angstrom) / float(pixel_size)
    sigma = float(sigma_angstrom) / float(pixel_size)
    if radius_angstrom is None:
        dist = (idx - zc)[:, None, None] * np.ones((1, n, n))
    else:
        r = float(radius_angstrom) / float(pixel_size)
        c = n // 2
        z, y, x = np.meshgrid(idx - (zc - r), idx - c, idx - c, indexing="ij")
        dist = np.sqrt(x**2 + y**2 + z**2) - r
    out = np.exp(-0.5 * ((dist - half) / sigma) ** 2) + np.exp(-0.5 * ((dist + half) / sigma) ** 2)
    return (float(polarity) * out).astype(np.float32)


def height_cc_profile(
    average: np.ndarray, reference: np.ndarray, max_shift_px: int = PROTOCOL_MAX_SHIFT_PX, mask=None
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-correlation of ``average`` and ``reference`` as a function of a z shift only.

    ``C(dz) = sum_p m(p) r(p) a(p + dz e_z)`` over the box (no wrap-around: out-of-box voxels
    count as 0), with ``a``, ``r`` the maps minus their (masked) means and ``m`` the mask; it is
    the 3-D CC restricted to shifts along z, computed column by column with FFTs along z.

    Parameters
    ----------
    average, reference : np.ndarray
        (n, n, n) maps (z, y, x), same shape.
    max_shift_px : int
        Largest |dz| tested (pixels).
    mask : np.ndarray, optional
        (n, n, n) weights in 0..1 applied to the reference (the region compared).

    Returns
    -------
    shifts : np.ndarray
        (2 L + 1,) integer shifts -L..L, L = min(max_shift_px, n - 1).
    cc : np.ndarray
        (2 L + 1,) normalised CC ``C(dz) / (||m r|| ||a||)``.
    """
    a = np.asarray(average, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape or a.ndim != 3:
        raise ValueError(f"average {a.shape} and reference {r.shape} must be 3-D of one shape")
    m = np.ones_like(r) if mask is None else np.asarray(mask, dtype=np.float64)
    if m.shape != r.shape:
        raise ValueError(f"mask {m.shape} must have the shape of the maps {r.shape}")
    weight = m.sum()
    r = m * (r - (m * r).sum() / weight)
    a = a - (m * a).sum() / weight
    nz = a.shape[0]
    size = scipy.fft.next_fast_len(2 * nz)
    fa = scipy.fft.rfft(a, n=size, axis=0, workers=-1)
    fr = scipy.fft.rfft(r, n=size, axis=0, workers=-1)
    corr = scipy.fft.irfft(
        (fa * np.conj(fr)).sum(axis=(1, 2)), n=size
    )  # corr[k] = sum r(z) a(z + k)
    lim = int(min(max_shift_px, nz - 1))
    shifts = np.arange(-lim, lim + 1)
    norm = np.linalg.norm(r) * np.linalg.norm(a)
    return shifts, corr[shifts % size] / (norm if norm > 0 else 1.0)


def register_height(
    average: np.ndarray, reference: np.ndarray, max_shift_px: int = PROTOCOL_MAX_SHIFT_PX, mask=None
) -> float:
    """Z shift (pixels) that best aligns ``average`` to ``reference``; subpixel by a parabola.

    Parameters
    ----------
    average : np.ndarray
        (n, n, n) tomogram average (z, y, x), its z axis the particles' z axis.
    reference : np.ndarray
        (n, n, n) reference, e.g. :func:`membrane_reference` (same contrast as ``average``).
    max_shift_px : int
        Shift limit (pixels; 20 in the protocol). A maximum on the limit is returned as is.
    mask : np.ndarray, optional
        Weights applied to the reference (see :func:`height_cc_profile`).

    Returns
    -------
    float
        ``dz`` with ``average(p + c + (0, 0, dz)) ~ reference(p + c)``: the average's membrane
        lies ``dz`` pixels above (+z) the reference's. Pass it to :func:`apply_height_shift`.
    """
    shifts, cc = height_cc_profile(average, reference, max_shift_px, mask)
    i = int(np.argmax(cc))
    if 0 < i < cc.size - 1:
        left, mid, right = cc[i - 1], cc[i], cc[i + 1]
        denom = left - 2.0 * mid + right
        frac = 0.5 * (left - right) / denom if denom < 0 else 0.0
        return float(shifts[i] + np.clip(frac, -0.5, 0.5))
    return float(shifts[i])


def apply_height_shift(table: pd.DataFrame, dz_px: float, source: str = "table") -> pd.DataFrame:
    """Move every particle by ``dz_px`` along its own z axis (Dynamo ``dynamo_table_rigid`` with a z shift).

    Parameters
    ----------
    table : pd.DataFrame
        Dynamo table of one tomogram (the one whose average gave ``dz_px``).
    dz_px : float
        Output of :func:`register_height`, pixels of the average (particle box).
    source : str
        Table name for error messages.

    Returns
    -------
    pd.DataFrame
        Copy with ``(dx, dy, dz) += R_i @ (0, 0, dz_px)`` (tomogram frame, pixels); angles and
        ``x, y, z`` unchanged. Re-averaging with it moves the average's features down by
        ``dz_px``, onto the reference height.
    """
    return rigid_transform(table, np.eye(3), (0.0, 0.0, float(dz_px)), source=source)
