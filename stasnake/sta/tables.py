"""Table preparation shared by the picking and cropping rules."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.io.dynamo_table import particle_positions


def prepare_crop_table(
    table: pd.DataFrame,
    tomo_number: int,
    tomogram_shape_zyx: tuple[int, int, int],
    pixel_size_angstrom: float,
    tilt_range_deg: tuple[float, float],
    source: str = "table",
) -> pd.DataFrame:
    """Stamp tomogram number, pixel size and wedge on a table; check positions.

    Parameters
    ----------
    table : pd.DataFrame
        Dynamo table (positions in 1-based pixels of the full-size tomogram).
    tomo_number : int
        Value for column ``tomo``.
    tomogram_shape_zyx : tuple of int
        Shape of the tomogram the positions refer to.
    pixel_size_angstrom : float
        Value for column ``apix``.
    tilt_range_deg : tuple of float
        (min, max) tilt angle: the wedge columns ``ymintilt``, ``ymaxtilt``.
    source : str
        File name for error messages.

    Returns
    -------
    pd.DataFrame
        A copy with ``tomo``, ``apix``, ``ftype`` = 1 and the tilt range set.

    Raises
    ------
    InputError
        When a particle centre lies outside the tomogram (names the row and tag).
    """
    out = table.copy()
    out["tomo"] = int(tomo_number)
    out["apix"] = float(pixel_size_angstrom)
    out["ftype"] = 1
    out["ymintilt"], out["ymaxtilt"] = tilt_range_deg
    xyz = particle_positions(out)
    upper = np.array(tomogram_shape_zyx[::-1], dtype=float)
    outside = np.any((xyz < 0.5) | (xyz > upper + 0.5), axis=1)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InputError(
            source,
            f"row {i + 1} (tag {int(out['tag'].iloc[i])}) at (x, y, z) = {np.round(xyz[i], 2).tolist()} "
            f"lies outside the tomogram of {upper.astype(int).tolist()} px (x, y, z); "
            f"{int(outside.sum())} particle(s) outside in all",
        )
    return out


def rows_of_tomogram(table: pd.DataFrame, tomo_number: int, known_tomo_numbers, source: str = "table") -> pd.DataFrame:
    """The rows of a table that holds several tomograms which belong to tomogram ``tomo_number``.

    Parameters
    ----------
    table : pd.DataFrame
        Dynamo table with particles of several tomograms (column ``tomo``).
    tomo_number : int
        Tomogram wanted.
    known_tomo_numbers : iterable of int
        Tomo numbers of all tilt series in the sample list.
    source : str
        File name for error messages.

    Returns
    -------
    pd.DataFrame
        The matching rows, re-indexed.

    Raises
    ------
    InputError
        When rows refer to a tomo number that no tilt series of the sample list has
        (names the first such row and the numbers), so that no particle is silently lost.
    """
    known = {int(t) for t in known_tomo_numbers}
    tomo = table["tomo"].to_numpy().astype(np.int64)
    unknown = ~np.isin(tomo, list(known))
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise InputError(
            source,
            f"row {i + 1} (tag {int(table['tag'].iloc[i])}) has tomo {tomo[i]}, which no tilt series of the "
            f"sample list has (tomo numbers {sorted(known)}); {int(unknown.sum())} row(s) with tomo "
            f"{sorted(set(tomo[unknown].tolist()))} in all",
        )
    return table[tomo == int(tomo_number)].reset_index(drop=True)


def half_set(tags) -> np.ndarray:
    """Gold-standard half (1 or 2) of each tag: RELION's ``rlnRandomSubset`` = tag % 2 + 1.

    Even tags form half 1, odd tags half 2; the RELION export and the
    half-maps use this one rule.
    """
    return np.asarray(tags, dtype=np.int64) % 2 + 1


def split_even_odd(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of half 1 (even tags) and half 2 (odd tags), see :func:`half_set`."""
    half1 = half_set(table["tag"].to_numpy()) == 1
    return half1, ~half1


def table_after_crop(table: pd.DataFrame, kept: np.ndarray, remainder_xyz: np.ndarray) -> pd.DataFrame:
    """The table of cropped particles: box centres in x, y, z, the rest in dx, dy, dz.

    Cropping centres each box on the rounded particle centre; the subpixel
    remainder stays in the shift columns so that ``x + dx`` is unchanged.

    Parameters
    ----------
    table : pd.DataFrame
        Table that was cropped.
    kept : np.ndarray
        (n,) bool, particles that were cropped.
    remainder_xyz : np.ndarray
        (n_kept, 3) particle centre minus box centre, pixels.

    Returns
    -------
    pd.DataFrame
        The kept rows, re-indexed.
    """
    out = table[np.asarray(kept, dtype=bool)].reset_index(drop=True)
    centres = particle_positions(out)
    remainder = np.asarray(remainder_xyz, dtype=float).reshape(-1, 3)
    out[["x", "y", "z"]] = centres - remainder
    out[["dx", "dy", "dz"]] = remainder
    return out


def tags_with_halves_by_group(table: pd.DataFrame, by=("tomo", "reg")) -> np.ndarray:
    """New tags that put whole groups (e.g. VLPs) into one gold-standard half each.

    Particles of one VLP share membrane and see each other's lattice in their boxes; with
    the VLPs split between the halves (instead of alternating tags particle by particle) the
    two half-maps share no data and their FSC is not inflated. Groups are assigned, largest
    first, to the half with fewer particles so far; half 1 gets even tags ``2, 4, ...`` and
    half 2 odd tags ``1, 3, ...`` (:func:`half_set`), in table order.

    Parameters
    ----------
    table : pd.DataFrame
        Dynamo table with the ``by`` columns.
    by : sequence of str
        Columns whose combination identifies a group (tomogram and VLP: ``tomo``, ``reg``).

    Returns
    -------
    np.ndarray
        (n,) int64 tags, unique.
    """
    n = len(table)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    keys = table[list(by)].astype(np.int64).apply(tuple, axis=1)
    sizes = keys.value_counts(sort=False)
    order = sorted(sizes.index, key=lambda k: (-sizes[k], k))
    counts = {1: 0, 2: 0}
    half_of = {}
    for key in order:
        half = 1 if counts[1] <= counts[2] else 2
        half_of[key] = half
        counts[half] += int(sizes[key])
    halves = keys.map(half_of).to_numpy()
    tags = np.zeros(n, dtype=np.int64)
    tags[halves == 1] = 2 * np.arange(1, int((halves == 1).sum()) + 1)
    tags[halves == 2] = 2 * np.arange(1, int((halves == 2).sum()) + 1) - 1
    return tags
