"""Tight alignment masks that follow the VLP membrane (protocol step 8B)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from stasnake.errors import InputError
from stasnake.sta.height import membrane_reference
from stasnake.sta.masks import membrane_cylinder_mask, membrane_height, tight_mask_from_average
from stasnake.synth.unit import unit_map

BOX = 48
APIX = 5.4
SPACING = 75.0
OFFSET = 90.0  # lattice centre below the membrane mid-plane, Å (synthetic data sets: -90 Å)
CENTRE = BOX // 2
MEMBRANE_Z = CENTRE + OFFSET / APIX


def _upper_edge(mask_column: np.ndarray) -> float:
    """Highest z index (linear interpolation) where a column of the mask is still >= 0.5."""
    inside = np.flatnonzero(mask_column >= 0.5)
    top = int(inside.max())
    if top + 1 >= len(mask_column):
        return float(top)
    a, b = mask_column[top], mask_column[top + 1]
    return top + (a - 0.5) / (a - b)


def _lower_edge(mask_column: np.ndarray) -> float:
    """Lowest z index (linear interpolation) where a column of the mask is >= 0.5."""
    return -_upper_edge(mask_column[::-1]) + len(mask_column) - 1


def _patch(vlp_radius_angstrom=None, rng=None):
    """Hexagonal lattice of units (centre unit at the box centre) below a bilayer; protein bright."""
    unit = unit_map(BOX, APIX, SPACING)
    a = SPACING / APIX
    vol = np.zeros_like(unit, dtype=np.float64)
    r_lat = None if vlp_radius_angstrom is None else (vlp_radius_angstrom - OFFSET) / APIX
    for i in range(-3, 4):
        for j in range(-3, 4):
            x, y = a * (i + 0.5 * j), a * (np.sqrt(3) / 2 * j)
            rho = np.hypot(x, y)
            if rho > BOX:
                continue
            dz = 0.0 if r_lat is None else -(r_lat - np.sqrt(max(r_lat**2 - rho**2, 0.0)))
            vol += ndimage.shift(unit, (dz, y, x), order=1, mode="constant")
    vol += membrane_reference(
        BOX, APIX, z_centre_px=MEMBRANE_Z, radius_angstrom=vlp_radius_angstrom, polarity=0.6
    )
    if rng is not None:
        vol += rng.normal(0.0, 0.05, vol.shape)
    return vol.astype(np.float32), unit


def test_cylinder_mask_values_and_extent():
    m = membrane_cylinder_mask(BOX, 38.0, 18.0, below_px=20.0, above_px=5.0, edge_px=2.0)
    assert m.shape == (BOX,) * 3 and m.dtype == np.float32
    assert m.min() >= 0.0 and m.max() <= 1.0
    col = m[:, CENTRE, CENTRE]
    assert np.all(col[18:44] == 1.0) and np.all(col[:16] == 0.0) and np.all(col[46:] == 0.0)
    assert m[38, CENTRE, CENTRE + 18] == 1.0 and m[38, CENTRE, CENTRE + 21] == 0.0
    corners = m[np.ix_([0, -1], [0, -1], [0, -1])]
    assert np.all(corners == 0.0)


def test_cylinder_mask_follows_curvature():
    radius, zm, above = 40.0, 30.0, 4.0
    curved = membrane_cylinder_mask(BOX, zm, 20.0, 10.0, above, edge_px=2.0, vlp_radius_px=radius)
    flat = membrane_cylinder_mask(BOX, zm, 20.0, 10.0, above, edge_px=2.0)
    rho = 16
    r_half = radius + above + 1.0  # the 0.5 level lies half the edge (1 px) outside the shell
    sag = r_half - np.sqrt(r_half**2 - rho**2)
    drop_curved = _upper_edge(curved[:, CENTRE, CENTRE]) - _upper_edge(
        curved[:, CENTRE, CENTRE + rho]
    )
    drop_flat = _upper_edge(flat[:, CENTRE, CENTRE]) - _upper_edge(flat[:, CENTRE, CENTRE + rho])
    print(
        f"upper edge drop at rho {rho}: curved {drop_curved:.2f} px (sag {sag:.2f}), flat {drop_flat:.2f}"
    )
    assert abs(drop_curved - sag) < 0.3 and abs(drop_flat) < 0.1
    assert (
        curved[int(zm + above + 2), CENTRE, CENTRE + rho] < 0.05
    )  # inside the flat slab, outside here


def test_cylinder_mask_shell_can_leave_the_mid_surface_out():
    """Negative ``above_px``: the shell ends below the membrane mid-surface (5 to 12 px below it)."""
    m = membrane_cylinder_mask(BOX, 38.0, 18.0, below_px=12.0, above_px=-5.0, edge_px=2.0)
    col = m[:, CENTRE, CENTRE]
    assert np.all(col[26:34] == 1.0) and np.all(col[35:] == 0.0) and np.all(col[:24] == 0.0)
    with pytest.raises(InputError, match="empty"):
        membrane_cylinder_mask(BOX, 38.0, 18.0, below_px=4.0, above_px=-5.0)


def test_cylinder_mask_rejects_bad_input():
    with pytest.raises(InputError):
        membrane_cylinder_mask(BOX, 30.0, -1.0, 5.0, 5.0)
    with pytest.raises(InputError):
        membrane_cylinder_mask(BOX, 30.0, 10.0, np.nan, 5.0)
    with pytest.raises(InputError):
        membrane_cylinder_mask(BOX, 30.0, 10.0, 5.0, 5.0, vlp_radius_px=0.0)


@pytest.mark.parametrize("vlp_radius", [None, 350.0])
@pytest.mark.parametrize("protein_sign", [1.0, -1.0])
def test_tight_mask_from_synthetic_patch(vlp_radius, protein_sign):
    rng = np.random.default_rng(5)
    patch, unit = _patch(vlp_radius, rng)
    average = protein_sign * patch
    zm, _, _ = membrane_height(average, APIX, SPACING, protein_sign, vlp_radius)
    mask = tight_mask_from_average(
        average, APIX, SPACING, protein_sign, vlp_radius_angstrom=vlp_radius
    )
    central = unit > 0.1 * unit.max()
    core_min = float(mask[central].min())
    membrane_val = float(mask[int(round(MEMBRANE_Z)), CENTRE, CENTRE])
    corners = float(mask[np.ix_([0, -1], [0, -1], [0, -1])].max())
    fraction = float(mask.mean())
    print(
        f"radius {vlp_radius} sign {protein_sign:+.0f}: membrane z {zm:.2f} (true {MEMBRANE_Z:.2f}), "
        f"mask min over central unit {core_min:.3f}, at membrane {membrane_val:.3f}, corners {corners:.3f}, "
        f"volume fraction {fraction:.3f}"
    )
    assert abs(zm - MEMBRANE_Z) < 1.5
    assert mask.min() >= 0.0 and mask.max() <= 1.0
    assert core_min > 0.99 and membrane_val > 0.99 and corners == 0.0
    assert fraction < 0.6
    if vlp_radius is not None:
        # the lower (protein-side) edge is a sphere about the VLP centre: it drops by its sag
        rho = 18
        lower_centre = _lower_edge(mask[:, CENTRE, CENTRE])
        r_low = vlp_radius / APIX - (zm - lower_centre)
        sag = r_low - np.sqrt(r_low**2 - rho**2)
        drop = lower_centre - _lower_edge(mask[:, CENTRE, CENTRE + rho])
        print(f"  lower edge drop at rho {rho}: {drop:.2f} px (sag {sag:.2f})")
        assert abs(drop - sag) < 0.7


@pytest.mark.parametrize("vlp_radius", [None, 350.0])
@pytest.mark.parametrize("protein_sign", [1.0, -1.0])
def test_tight_mask_without_membrane_covers_the_protein_layer_only(vlp_radius, protein_sign):
    """``include_membrane=False``: the central unit stays inside, both leaflets (19 Å either side
    of the mid-surface, 6 Å wide) lie outside, and the protein-side edge is the same as with the
    membrane."""
    patch, unit = _patch(vlp_radius, np.random.default_rng(5))
    average = protein_sign * patch
    args = (average, APIX, SPACING, protein_sign)
    with_membrane = tight_mask_from_average(*args, vlp_radius_angstrom=vlp_radius)
    without = tight_mask_from_average(*args, vlp_radius_angstrom=vlp_radius, include_membrane=False)
    central = unit > 0.1 * unit.max()
    leaflets = [int(round(MEMBRANE_Z + s * 19.0 / APIX)) for s in (-1, 1)]
    column = without[:, CENTRE, CENTRE]
    print(f"radius {vlp_radius} sign {protein_sign:+.0f}: min over the unit {without[central].min():.3f}, "
          f"at the leaflets {column[leaflets].round(3)}, upper edge {_upper_edge(column):.2f} "
          f"(inner leaflet at {MEMBRANE_Z - 19.0 / APIX:.2f}), volume {without.mean():.3f} vs {with_membrane.mean():.3f}")
    assert without[central].min() > 0.99
    assert column[leaflets].max() == 0.0 and without[leaflets[0]].max() < 0.05
    assert _upper_edge(column) < MEMBRANE_Z - 19.0 / APIX - 1.0
    assert abs(_lower_edge(column) - _lower_edge(with_membrane[:, CENTRE, CENTRE])) < 1e-6
    assert np.all(without <= with_membrane + 1e-6)


def test_lattice_layer_mask_covers_the_lattice_and_leaves_the_membrane_out():
    """The picking projects' mask: the central unit's layer inside, the bilayer (both leaflets,
    19 Å either side of the mid-plane) outside, for either contrast."""
    from stasnake.sta.masks import lattice_layer_mask

    vol, _ = _patch(rng=np.random.default_rng(1))
    for sign in (1.0, -1.0):
        mask = lattice_layer_mask(sign * vol, APIX, SPACING, side="inside", protein_sign=sign)
        column = mask[:, CENTRE, CENTRE]
        leaflet = MEMBRANE_Z - 19.0 / APIX
        print(f"sign {sign:+.0f}: mask on the central column z {np.flatnonzero(column > 0.5)[[0, -1]]}, "
              f"lattice at {CENTRE}, inner leaflet at {leaflet:.1f}")  # fmt: skip
        assert column[CENTRE] == 1.0 and column[CENTRE - 5] == 1.0
        assert column[int(np.floor(leaflet)) :].max() == 0.0  # nothing of the membrane
        assert 0.0 <= mask.min() and mask.max() <= 1.0 and mask[:, 0, 0].max() == 0.0
    outside = lattice_layer_mask(vol, APIX, SPACING, side="outside", protein_sign=1.0)
    assert outside[: int(MEMBRANE_Z), CENTRE, CENTRE].max() == 0.0
    with pytest.raises(InputError, match="side"):
        lattice_layer_mask(vol, APIX, SPACING, side="above")
