"""Phantom tomogram volumes: VLPs (bilayer + lattice units), gold beads and an ice slab.

Volumes are (z, y, x) float32, protein-positive. Positions inside this module
are (x, y, z) in pixels relative to the volume centre (index ``n // 2``),
the frame of :mod:`stasnake.tilt.project`.
"""

from __future__ import annotations

import numba
import numpy as np

from stasnake.errors import InputError
from stasnake.synth.config import SynthConfig
from stasnake.synth.lattice import icosphere, lattice_radius, sphere_lattice

_TRIES = 2000
_RESTARTS = 100


def _fits_fov(centre_xyz, radius_px: float, shape_zyx, tilt_angles_deg, margin_px: float, margin_xy_px: float) -> bool:
    """True if a ball stays inside the volume and inside the field of view at every tilt."""
    nz, ny, nx = shape_zyx
    x, y, z = centre_xyz
    if abs(z) + radius_px > nz / 2 - margin_px:
        return False
    t = np.radians(np.asarray(tilt_angles_deg))
    u = x * np.cos(t) + z * np.sin(t)
    # the raw image is the aligned one rotated by ~85 degrees: stay in the inscribed circle
    return bool(np.all(np.hypot(u, y) + radius_px <= min(nx, ny) / 2 - margin_xy_px))


def _random_point(rng, shape_zyx) -> np.ndarray:
    nz, ny, nx = shape_zyx
    return rng.uniform(-0.5, 0.5, size=3) * np.array([nx, ny, nz])


def place_vlps(config: SynthConfig, rng: np.random.Generator, tilt_angles_deg) -> list[dict]:
    """Draw VLP radii, lattices and non-overlapping positions inside the field of view.

    Returns
    -------
    list of dict
        Per VLP: ``centre_px`` (x, y, z about the volume centre), ``radius_angstrom``
        (membrane mid-plane), ``lattice_radius_angstrom``, ``outer_radius_px``,
        ``positions_px`` (n, 3) and ``matrices`` (n, 3, 3) of its lattice units.
    """
    px = config.pixel_size_angstrom
    margin = config.margin_px + 3.0 * config.shift_rms_px
    vlps: list[dict] = []
    for _ in range(config.n_vlps):
        wanted = rng.uniform(*config.vlp_radius_range_angstrom)
        coverage = rng.uniform(*config.lattice_coverage_range)
        _, lat_r = lattice_radius(wanted + config.lattice_offset_angstrom, config.lattice_spacing_angstrom)
        pos, mats, lat_r, freq = sphere_lattice(lat_r, config.lattice_spacing_angstrom, coverage, rng)
        radius = lat_r - config.lattice_offset_angstrom
        half_unit = 0.5 * config.unit_box_px * px
        outer = max(radius + 0.5 * config.membrane_leaflet_separation_angstrom
                    + 3 * config.membrane_leaflet_sigma_angstrom, lat_r + half_unit) / px  # fmt: skip
        vlps.append({"radius_angstrom": radius, "lattice_radius_angstrom": lat_r, "outer_radius_px": outer,
                     "coverage": len(pos) / len(icosphere(freq)),
                     "lattice_px": pos / px, "matrices": mats})  # fmt: skip
    for _ in range(_RESTARTS):  # sequential placement can block itself: start over
        centres: list[np.ndarray] = []
        for v in vlps:
            for _ in range(_TRIES):
                c = _random_point(rng, config.tomogram_shape_zyx)
                if _fits_fov(c, v["outer_radius_px"], config.tomogram_shape_zyx, tilt_angles_deg, config.margin_px, margin) and all(
                    np.linalg.norm(c - c2) > v["outer_radius_px"] + v2["outer_radius_px"] + 2 for c2, v2 in zip(centres, vlps, strict=False)
                ):
                    centres.append(c)
                    break
            else:
                break
        if len(centres) == len(vlps):
            break
    else:
        raise InputError("n_vlps", f"cannot place {config.n_vlps} VLPs of radius up to "
                         f"{max(v['outer_radius_px'] for v in vlps) * px:.0f} Å in a "
                         f"{config.tomogram_shape_zyx} volume; use fewer or smaller")  # fmt: skip
    for c, v in zip(centres, vlps, strict=True):
        v["centre_px"] = c
        v["positions_px"] = c + v.pop("lattice_px")
    return vlps


def place_fiducials(config: SynthConfig, rng: np.random.Generator, tilt_angles_deg, vlps: list[dict]) -> np.ndarray:
    """Bead centres (n, 3) in px about the volume centre, outside VLPs and apart from each other."""
    r = 0.5 * config.bead_diameter_angstrom / config.pixel_size_angstrom
    margin = config.margin_px + 3.0 * config.shift_rms_px
    beads: list[np.ndarray] = []
    for _ in range(config.n_fiducials):
        for _ in range(_TRIES):
            c = _random_point(rng, config.tomogram_shape_zyx)
            if not _fits_fov(c, r, config.tomogram_shape_zyx, tilt_angles_deg, config.margin_px, margin):
                continue
            if all(np.linalg.norm(c - v["centre_px"]) > v["outer_radius_px"] + r + 1 for v in vlps) and all(
                np.linalg.norm(c - b) > 2 * r + 1 for b in beads
            ):
                beads.append(c)
                break
        else:
            raise InputError("n_fiducials", f"cannot place {config.n_fiducials} beads; use fewer")
    return np.asarray(beads, dtype=np.float64).reshape(-1, 3)


def _local_box(volume, centre_xyz, half: float):
    """Slices and (x, y, z) coordinate grids (about the ball centre) of a box around it."""
    shape = volume.shape
    cidx = np.asarray(centre_xyz) + np.array([shape[2] // 2, shape[1] // 2, shape[0] // 2])
    lo = np.maximum(np.floor(cidx - half).astype(int), 0)
    hi = np.minimum(np.ceil(cidx + half).astype(int) + 1, [shape[2], shape[1], shape[0]])
    sl = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    z = (np.arange(lo[2], hi[2]) - cidx[2])[:, None, None]
    y = (np.arange(lo[1], hi[1]) - cidx[1])[None, :, None]
    x = (np.arange(lo[0], hi[0]) - cidx[0])[None, None, :]
    return sl, x, y, z


def add_bilayer(volume, centre_xyz, radius_px: float, separation_px: float, sigma_px: float, density: float) -> None:
    """Add two Gaussian leaflets at ``radius +- separation / 2`` (px) around a centre, in place."""
    sl, x, y, z = _local_box(volume, centre_xyz, radius_px + separation_px / 2 + 4 * sigma_px)
    r = np.sqrt(x * x + y * y + z * z)
    prof = np.zeros(r.shape, dtype=np.float32)
    for s in (-0.5, 0.5):
        prof += np.exp(-0.5 * ((r - radius_px - s * separation_px) / sigma_px) ** 2).astype(np.float32)
    volume[sl] += density * prof


def add_ball(volume, centre_xyz, radius_px: float, density: float) -> None:
    """Add a ball with a soft (1 px) edge, in place."""
    sl, x, y, z = _local_box(volume, centre_xyz, radius_px + 2)
    r = np.sqrt(x * x + y * y + z * z)
    volume[sl] += (density * np.clip(radius_px + 0.5 - r, 0.0, 1.0)).astype(np.float32)


@numba.njit(cache=True, fastmath=True)
def _add_units_kernel(volume, unit, centres_idx, matrices):  # pragma: no cover - numba
    nz, ny, nx = volume.shape
    nb = unit.shape[0]
    cb = nb // 2
    half = nb // 2
    for p in range(centres_idx.shape[0]):
        cx, cy, cz = centres_idx[p, 0], centres_idx[p, 1], centres_idx[p, 2]
        r = matrices[p]
        for iz in range(max(0, int(cz) - half), min(nz, int(cz) + half + 2)):
            dz = iz - cz
            for iy in range(max(0, int(cy) - half), min(ny, int(cy) + half + 2)):
                dy = iy - cy
                for ix in range(max(0, int(cx) - half), min(nx, int(cx) + half + 2)):
                    dx = ix - cx
                    # reference coordinates q = R^T d (R active, reference -> tomogram)
                    qx = r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz + cb
                    qy = r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz + cb
                    qz = r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz + cb
                    if qx < 0 or qy < 0 or qz < 0 or qx >= nb - 1 or qy >= nb - 1 or qz >= nb - 1:
                        continue
                    x0, y0, z0 = int(qx), int(qy), int(qz)
                    fx, fy, fz = qx - x0, qy - y0, qz - z0
                    v = ((1 - fz) * ((1 - fy) * ((1 - fx) * unit[z0, y0, x0] + fx * unit[z0, y0, x0 + 1])
                                     + fy * ((1 - fx) * unit[z0, y0 + 1, x0] + fx * unit[z0, y0 + 1, x0 + 1]))
                         + fz * ((1 - fy) * ((1 - fx) * unit[z0 + 1, y0, x0] + fx * unit[z0 + 1, y0, x0 + 1])
                                 + fy * ((1 - fx) * unit[z0 + 1, y0 + 1, x0] + fx * unit[z0 + 1, y0 + 1, x0 + 1])))  # fmt: skip
                    volume[iz, iy, ix] += v


def add_units(volume: np.ndarray, unit_zyx: np.ndarray, positions_px: np.ndarray, matrices: np.ndarray) -> None:
    """Add rotated copies of a unit map in place: value at offset d is ``unit(R^T d)``.

    Parameters
    ----------
    volume : np.ndarray
        (nz, ny, nx) float32 volume, modified in place.
    unit_zyx : np.ndarray
        (b, b, b) unit map, centre at index b // 2.
    positions_px : np.ndarray
        (n, 3) unit centres (x, y, z) in px about the volume centre.
    matrices : np.ndarray
        (n, 3, 3) active rotations reference -> tomogram (xyz column vectors).
    """
    nz, ny, nx = volume.shape
    idx = np.asarray(positions_px, dtype=np.float64) + np.array([nx // 2, ny // 2, nz // 2])
    _add_units_kernel(volume, np.ascontiguousarray(unit_zyx, dtype=np.float32), idx,
                      np.ascontiguousarray(matrices, dtype=np.float64))  # fmt: skip


def render_specimen(config: SynthConfig, unit_zyx: np.ndarray, vlps: list[dict], beads_px: np.ndarray) -> np.ndarray:
    """The specimen without ice: bilayers, lattice units and beads, (z, y, x) float32."""
    px = config.pixel_size_angstrom
    vol = np.zeros(config.tomogram_shape_zyx, dtype=np.float32)
    for v in vlps:
        add_bilayer(vol, v["centre_px"], v["radius_angstrom"] / px, config.membrane_leaflet_separation_angstrom / px,
                    config.membrane_leaflet_sigma_angstrom / px, config.membrane_density)  # fmt: skip
        add_units(vol, unit_zyx, v["positions_px"], v["matrices"])
    for b in beads_px:
        add_ball(vol, b, 0.5 * config.bead_diameter_angstrom / px, config.bead_density)
    return vol


def add_ice(volume: np.ndarray, thickness_px: float, density: float) -> None:
    """Add a constant slab ``|Z| <= thickness / 2`` (px about the centre, soft 1 px edges), in place."""
    nz = volume.shape[0]
    z = np.arange(nz) - nz // 2
    w = np.clip(thickness_px / 2 + 0.5 - np.abs(z), 0.0, 1.0).astype(np.float32)
    volume += (density * w)[:, None, None]
