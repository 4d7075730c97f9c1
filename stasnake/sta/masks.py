"""Masks derived from maps (for masked FSC and, later, alignment masks)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def mask_from_map(
    volume: np.ndarray,
    threshold_fraction: float = 0.1,
    dilate_px: int = 2,
    edge_px: float = 3.0,
    smooth_px: float = 1.0,
) -> np.ndarray:
    """Soft mask around the density of a protein-positive map.

    Parameters
    ----------
    volume : np.ndarray
        (z, y, x) map, protein positive.
    threshold_fraction : float
        Voxels of the Gaussian-smoothed map above this fraction of its maximum
        form the core.
    dilate_px : int
        Dilation of the core in pixels.
    edge_px : float
        Width of the raised-cosine fall-off outside the dilated core, pixels.
    smooth_px : float
        Gaussian sigma (pixels) applied before thresholding.

    Returns
    -------
    np.ndarray
        (z, y, x) float32 mask in [0, 1].
    """
    smooth = ndimage.gaussian_filter(np.asarray(volume, dtype=np.float32), smooth_px)
    core = smooth > threshold_fraction * smooth.max()
    if dilate_px > 0:
        core = ndimage.binary_dilation(core, iterations=int(dilate_px))
    distance = ndimage.distance_transform_edt(~core)
    edge = 0.5 * (1.0 + np.cos(np.pi * np.clip(distance / max(edge_px, 1e-6), 0.0, 1.0)))
    return np.where(core, 1.0, np.where(distance < edge_px, edge, 0.0)).astype(np.float32)


def subtract_masked_mean(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``volume`` minus its mean weighted by ``mask`` (masked maps then compare shape, not offset)."""
    return volume - float(np.sum(volume * mask) / np.sum(mask))
