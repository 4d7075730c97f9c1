"""Near-hexagonal lattices on spheres (geodesic icospheres) with unit orientations.

A class-I geodesic icosphere of frequency ``nu`` has ``10 nu^2 + 2`` vertices,
six-fold coordinated except for 12 five-fold defects, like the incomplete
hexagonal CA-SP1 lattice of immature HIV-1 VLPs. Removing one or two caps
leaves the requested fraction of the sphere covered.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.spatial import cKDTree

_PHI = (1.0 + 5.0**0.5) / 2.0
_ICO_V = np.array([[-1, _PHI, 0], [1, _PHI, 0], [-1, -_PHI, 0], [1, -_PHI, 0],
                   [0, -1, _PHI], [0, 1, _PHI], [0, -1, -_PHI], [0, 1, -_PHI],
                   [_PHI, 0, -1], [_PHI, 0, 1], [-_PHI, 0, -1], [-_PHI, 0, 1]], dtype=float)  # fmt: skip
_ICO_F = ((0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
          (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
          (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1))  # fmt: skip


@lru_cache(maxsize=32)
def icosphere(frequency: int) -> np.ndarray:
    """Unit-sphere vertices of a class-I geodesic icosphere, shape (10 f^2 + 2, 3), xyz."""
    f = int(frequency)
    if f < 1:
        raise ValueError("frequency must be >= 1")
    pts = []
    for a, b, c in _ICO_F:
        va, vb, vc = _ICO_V[a], _ICO_V[b], _ICO_V[c]
        for i in range(f + 1):
            for j in range(f + 1 - i):
                pts.append(va + (vb - va) * i / f + (vc - va) * j / f)
    pts = np.asarray(pts)
    pts /= np.linalg.norm(pts, axis=1, keepdims=True)
    _, keep = np.unique(np.round(pts, 9), axis=0, return_index=True)
    out = pts[np.sort(keep)]
    out.setflags(write=False)
    return out


def _median_nn(points: np.ndarray) -> float:
    d, _ = cKDTree(points).query(points, k=2)
    return float(np.median(d[:, 1]))


@lru_cache(maxsize=64)
def _unit_spacing(frequency: int) -> float:
    return _median_nn(icosphere(frequency))


def lattice_radius(radius_angstrom: float, spacing_angstrom: float, tolerance: float = 0.05) -> tuple[int, float]:
    """Icosphere frequency and lattice radius (Å) near ``radius_angstrom`` for a spacing.

    The radius is moved (at most as far as needed) so that the median
    nearest-neighbour distance is within ``tolerance`` of ``spacing_angstrom``.
    """
    best = None
    for f in range(1, 200):
        r_exact = spacing_angstrom / _unit_spacing(f)
        r = min(max(radius_angstrom, r_exact * (1 - tolerance)), r_exact * (1 + tolerance))
        if best is None or abs(r - radius_angstrom) < abs(best[1] - radius_angstrom):
            best = (f, r)
        if r_exact * (1 - tolerance) > radius_angstrom:
            break
    return best


def _orientations(points: np.ndarray) -> np.ndarray:
    """Active matrices: z = outward normal, x = tangential direction to the nearest neighbour."""
    normals = points / np.linalg.norm(points, axis=1, keepdims=True)
    _, idx = cKDTree(points).query(points, k=2)
    d = points[idx[:, 1]] - points
    x = d - np.sum(d * normals, axis=1, keepdims=True) * normals
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.cross(normals, x)
    return np.stack([x, y, normals], axis=2)


def sphere_lattice(
    radius_angstrom: float,
    spacing_angstrom: float,
    coverage: float,
    rng: np.random.Generator,
    n_caps: int | None = None,
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Lattice points on a sphere about the origin with caps removed.

    Parameters
    ----------
    radius_angstrom : float
        Requested lattice radius in Å (adjusted, see :func:`lattice_radius`).
    spacing_angstrom : float
        Nearest-neighbour spacing in Å.
    coverage : float
        Fraction of lattice points kept (0..1].
    rng : np.random.Generator
        Random source for the cap directions (and their number when ``n_caps`` is None: 1 or 2).
    n_caps : int, optional
        Number of caps to remove.

    Returns
    -------
    positions_angstrom : np.ndarray
        (n, 3) xyz positions relative to the sphere centre, Å.
    matrices : np.ndarray
        (n, 3, 3) active rotations (reference -> tomogram); column 2 is the
        outward normal, column 0 the tangential direction to a nearest
        neighbour of the full lattice.
    radius_angstrom : float
        The lattice radius used, Å.
    frequency : int
        Icosphere frequency.
    """
    freq, radius = lattice_radius(radius_angstrom, spacing_angstrom)
    unit = np.array(icosphere(freq))
    matrices = _orientations(unit)
    n_keep = int(round(float(coverage) * len(unit)))
    if n_keep < len(unit):
        k = int(rng.integers(1, 3)) if n_caps is None else int(n_caps)
        axes = rng.normal(size=(k, 3))
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
        score = np.max(unit @ axes.T, axis=1)
        keep = np.sort(np.argsort(score, kind="stable")[:n_keep])
        unit, matrices = unit[keep], matrices[keep]
    return unit * radius, matrices, radius, freq
