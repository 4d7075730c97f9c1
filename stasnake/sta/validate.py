"""Validation of maps against a known (synthetic ground-truth) map."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.sta.fsc import fourier_shell_correlation
from stasnake.sta.masks import mask_from_map, subtract_masked_mean


def compare_with_truth(
    volume: np.ndarray,
    pixel_size_angstrom: float,
    truth: np.ndarray,
    truth_pixel_size_angstrom: float,
    source: str = "truth map",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """FSC of a map against the truth and against the truth's mirror image.

    A map of the right hand correlates better with the truth than with its
    mirror (z flipped); the mirror curve is the hand check. Both maps are
    compared under a soft mask made from the truth (:func:`mask_from_map`),
    which isolates the unit from the membrane and lattice neighbours that a
    subtomogram average also contains, after removing each map's mean under
    the mask (WBP leaves large-scale offsets around dense objects).

    Parameters
    ----------
    volume, truth : np.ndarray
        (z, y, x) maps of the same cubic box, both protein-positive.
    pixel_size_angstrom, truth_pixel_size_angstrom : float
        Pixel sizes in Å; must agree within 1 %.
    source : str
        Name of the truth file for error messages.

    Returns
    -------
    fsc, fsc_mirrored : pd.DataFrame
        See :func:`stasnake.sta.fsc.fourier_shell_correlation`.
    """
    if volume.shape != truth.shape:
        raise InputError(source, f"box {truth.shape} differs from the map's {volume.shape}")
    if truth_pixel_size_angstrom and abs(truth_pixel_size_angstrom - pixel_size_angstrom) > 0.01 * pixel_size_angstrom:
        raise InputError(source, f"pixel size {truth_pixel_size_angstrom} Å differs from the map's {pixel_size_angstrom} Å")
    mask = mask_from_map(truth)
    volume = subtract_masked_mean(volume, mask)
    results = []
    for reference in (truth, mirror_z(truth)):
        reference = subtract_masked_mean(reference, mask)
        results.append(fourier_shell_correlation(volume, reference, pixel_size_angstrom=pixel_size_angstrom, mask=mask))
    return results[0], results[1]


def mirror_z(volume: np.ndarray) -> np.ndarray:
    """Mirror a (z, y, x) volume through the plane z = N // 2 (changes the hand)."""
    n = volume.shape[0]
    index = (2 * (n // 2) - np.arange(n)) % n
    return volume[index].copy()


def centre_crop(volume: np.ndarray, box: int) -> np.ndarray:
    """The central ``box``^3 of a cubic (z, y, x) map, keeping its centre voxel (index n // 2)."""
    start = volume.shape[0] // 2 - box // 2
    return volume[start:start + box, start:start + box, start:start + box]
