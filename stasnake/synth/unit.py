"""A chiral C6 "unit" map standing in for an immature CA-SP1 hexamer.

The unit is protein-positive (bright), sits in a cubic box with its six-fold
axis along z through the box centre (index ``box // 2`` on each axis), and is
built from anisotropic Gaussian blobs whose positions and long axes are set in
Å relative to the lattice spacing, so neighbouring units on a lattice of that
spacing touch. Two layers at different z (a compact inner ring above, a wide
ring below, linked by bridging knobs at the rim) fix the up/down direction;
blobs tilted out of plane and twisted like propeller blades make the map
chiral, so its mirror image differs; the blob at azimuth 0 points along +x, so
the in-plane angle is defined modulo 60 degrees.
"""

from __future__ import annotations

import numpy as np

#: Blobs at a lattice spacing of 75 Å (everything scales with spacing / 75):
#: (radius Å, azimuth offset deg, z Å, sigma radial Å, sigma width Å, sigma thickness Å,
#:  pitch deg, amplitude). The width axis is the tangential direction turned by the pitch
#: about the radial axis (toward +z): pitched blades make the map chiral.
_BLOBS = (
    (11.0, 30.0, 20.0, 5.0, 5.0, 5.0, 0.0, 0.8),  # small upper ring: up/down marker
    (30.0, -5.0, -14.0, 5.0, 9.0, 4.5, -40.0, 0.7),  # lower rim blades, pitched
)
#: Spiral arms (pinwheel, chiral even at low resolution): from (radius, azimuth, z) start to
#: end in Å / degrees, sampled by ``_ARM_POINTS`` Gaussians of sigma ``_ARM_SIGMA`` Å.
_ARM = ((7.0, 0.0, -6.0), (34.0, 45.0, 6.0))
_ARM_POINTS = 8
_ARM_SIGMA = 4.5


def _blob_frame(phi: float, pitch: float) -> np.ndarray:
    """Rows: radial, width and thickness unit vectors of a blob at azimuth phi."""
    radial = np.array([np.cos(phi), np.sin(phi), 0.0])
    tangential = np.array([-np.sin(phi), np.cos(phi), 0.0])
    up = np.array([0.0, 0.0, 1.0])
    width = np.cos(pitch) * tangential + np.sin(pitch) * up
    return np.stack([radial, width, np.cross(radial, width)])


def unit_map(box_px: int, pixel_size_angstrom: float, lattice_spacing_angstrom: float = 75.0) -> np.ndarray:
    """Render the chiral C6 unit.

    Parameters
    ----------
    box_px : int
        Side of the cubic box in pixels.
    pixel_size_angstrom : float
        Pixel size in Å.
    lattice_spacing_angstrom : float
        Centre-to-centre spacing of the lattice the unit is made for (Å);
        the unit's features scale with it.

    Returns
    -------
    np.ndarray
        float32 (box, box, box) in (z, y, x) order, maximum 1, C6-symmetric
        about the z axis through index ``box // 2``.
    """
    n = int(box_px)
    scale = float(lattice_spacing_angstrom) / 75.0
    ax = (np.arange(n) - n // 2) * float(pixel_size_angstrom)
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    pts = np.stack([x, y, z], axis=-1)  # (..., 3) xyz in Å
    out = np.zeros((n, n, n), dtype=np.float64)
    for radius, offset, zc, s_rad, s_width, s_thick, pitch, amp in _BLOBS:
        sig = scale * np.array([s_rad, s_width, s_thick])
        for i in range(6):
            phi = np.radians(60.0 * i + offset)
            centre = scale * np.array([radius * np.cos(phi), radius * np.sin(phi), zc])
            local = (pts - centre) @ _blob_frame(phi, np.radians(pitch)).T / sig
            out += amp * np.exp(-0.5 * np.einsum("...i,...i->...", local, local))
    (r0, a0, z0), (r1, a1, z1) = _ARM
    for i in range(6):
        for f in np.linspace(0.0, 1.0, _ARM_POINTS):
            phi = np.radians(60.0 * i + a0 + f * (a1 - a0))
            r, zc = scale * (r0 + f * (r1 - r0)), scale * (z0 + f * (z1 - z0))
            d = pts - np.array([r * np.cos(phi), r * np.sin(phi), zc])
            out += np.exp(-0.5 * np.einsum("...i,...i->...", d, d) / (scale * _ARM_SIGMA) ** 2)
    out /= out.max()
    return out.astype(np.float32)
