"""A simulated user's annotations for the synthetic demo, with realistic click errors.

The demo plays the user of the protocol's three manual steps (see
:mod:`stasnake.annotations`): it writes the files a person would write,
from the ground truth of :func:`stasnake.synth.generate_dataset`, into a
folder it is given (e.g. ``demo/annotations/``; the workflow itself never
writes annotations).

Frames and units
----------------
Dipoles are in 1-based pixels (x, y, z) of the tomogram binned by
``binning``: ``binned = (full - 1) / binning + 1``, because Fourier-cropped
binning (:func:`stasnake.tilt.reconstruct.bin_volume_fourier`) samples the
full-size 0-based index ``binning * j`` at binned index ``j``.

Markers are placed in the *unit frame* of a cubic box of side ``box_px``:
the lattice unit at the box centre (0-based index ``box_px // 2`` on each
axis, 1-based ``box_px // 2 + 1``), its six-fold axis along +z pointing
out of the VLP, and a nearest neighbour along +x, as in
:func:`stasnake.synth.unit.unit_map` and the orientations of
:func:`stasnake.synth.lattice.sphere_lattice`. Marker files store Å in the
ChimeraX scene of a map with origin 0 (:func:`stasnake.io.cmm.pixels_to_markers`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from stasnake.annotations import DIPOLE_COLUMNS
from stasnake.errors import InputError
from stasnake.io.cmm import pixels_to_markers, write_cmm
from stasnake.picking.dipoles import binned_to_full
from stasnake.picking.dipoles import write_dipoles as write_picking_dipoles


def _isotropic_errors(n: int, rms_px: float, rng: np.random.Generator, dims: int = 3) -> np.ndarray:
    """(n, dims) Gaussian errors whose root-mean-square length is ``rms_px``."""
    return rng.normal(scale=float(rms_px) / np.sqrt(dims), size=(n, dims))


def simulate_dipoles(
    truth_vlps: pd.DataFrame,
    rng: np.random.Generator,
    centre_error_px: float = 5.0,
    radius_error_px: float = 4.0,
    binning: int = 2,
) -> pd.DataFrame:
    """Dipoles as a user clicks them in the binned tomogram, with click errors.

    The user clicks the VLP centre, then a point on the membrane in the same
    z slice (as in Dynamo's dtmslice) in a random direction.

    Parameters
    ----------
    truth_vlps : pd.DataFrame
        ``truth/{ts}/vlps.csv``: columns x, y, z (1-based full-size pixels) and
        radius_px (membrane mid-plane radius, full-size pixels).
    rng : np.random.Generator
        Random source.
    centre_error_px : float
        Root-mean-square 3-D distance of the clicked centre from the true one,
        in binned pixels.
    radius_error_px : float
        Standard deviation of the clicked radius about the true one, binned pixels.
    binning : int
        Binning of the tomogram the user clicks in.

    Returns
    -------
    pd.DataFrame
        One row per VLP, columns :data:`stasnake.annotations.DIPOLE_COLUMNS`
        (1-based binned pixels, x y z).
    """
    for column in ("x", "y", "z", "radius_px"):
        if column not in truth_vlps.columns:
            raise InputError("truth_vlps", f"missing column {column!r}")
    n = len(truth_vlps)
    b = float(binning)
    centre = (truth_vlps[["x", "y", "z"]].to_numpy(float) - 1.0) / b + 1.0
    centre = centre + _isotropic_errors(n, centre_error_px, rng)
    radius = truth_vlps["radius_px"].to_numpy(float) / b + rng.normal(scale=radius_error_px, size=n)
    radius = np.maximum(radius, 1.0)
    phi = rng.uniform(0.0, 2.0 * np.pi, size=n)
    surface = centre + radius[:, None] * np.stack([np.cos(phi), np.sin(phi), np.zeros(n)], axis=1)
    return pd.DataFrame(np.hstack([centre, surface]), columns=list(DIPOLE_COLUMNS))


def write_dipoles(path: str | os.PathLike, dipoles: pd.DataFrame, binning: int) -> None:
    """Write ``dipoles.csv`` as a user would: a ``# binning: B`` comment, the header, one row per VLP.

    ``dipoles`` holds binned coordinates, rounded to the 0.01 px a user's clicks carry;
    the file is written by :func:`stasnake.picking.dipoles.write_dipoles` (atomic), the
    format the workflow reads.
    """
    clicks = dipoles[list(DIPOLE_COLUMNS)].round(2)
    full = pd.DataFrame(binned_to_full(clicks.to_numpy().reshape(-1, 3), binning).reshape(-1, 6),
                        columns=list(DIPOLE_COLUMNS))  # fmt: skip
    write_picking_dipoles(path, full, binning=int(binning), comment=f"binning: {int(binning)}")


def lattice_unit_centres(
    box_px: int,
    spacing_px: float,
    lattice_radius_px: float | None = None,
    azimuth_deg: float = 0.0,
) -> np.ndarray:
    """True centres of the central unit and its six neighbours in the unit frame.

    Parameters
    ----------
    box_px : int
        Box side (pixels); the central unit sits at 1-based ``box_px // 2 + 1``.
    spacing_px : float
        Centre-to-centre lattice spacing (pixels, chord length).
    lattice_radius_px : float, optional
        Radius of the spherical lattice (pixels): neighbours lie on the sphere
        centred ``lattice_radius_px`` below the central unit (-z). None: flat.
    azimuth_deg : float
        Azimuth of the first neighbour about z, from +x (degrees).

    Returns
    -------
    np.ndarray
        (7, 3) 1-based pixels (x, y, z): the central unit first.
    """
    centre = np.full(3, box_px // 2 + 1.0)
    phi = np.radians(azimuth_deg + 60.0 * np.arange(6))
    if lattice_radius_px is None:
        tangential, drop = float(spacing_px), 0.0
    else:
        r = float(lattice_radius_px)
        theta = 2.0 * np.arcsin(min(1.0, spacing_px / (2.0 * r)))
        tangential, drop = r * np.sin(theta), r * (1.0 - np.cos(theta))
    ring = np.stack([tangential * np.cos(phi), tangential * np.sin(phi), np.full(6, -drop)], axis=1)
    return np.vstack([centre, centre + ring])


def simulate_reference_center(
    box_px: int, rng: np.random.Generator, click_error_px: float = 1.0
) -> np.ndarray:
    """The user's reference-centre click: the box-centre unit with an error of RMS ``click_error_px``.

    Returns (1, 3) 1-based pixels (x, y, z) in the unit frame of the box.
    """
    return lattice_unit_centres(box_px, 1.0)[:1] + _isotropic_errors(1, click_error_px, rng)


def simulate_particle_centers(
    box_px: int,
    spacing_px: float,
    rng: np.random.Generator,
    click_error_px: float = 1.0,
    lattice_radius_px: float | None = None,
    azimuth_deg: float = 0.0,
) -> np.ndarray:
    """The user's unit-centre clicks: the seven centres of :func:`lattice_unit_centres` plus errors.

    Returns (7, 3) 1-based pixels (x, y, z), each off by an isotropic error of
    RMS length ``click_error_px``.
    """
    true = lattice_unit_centres(box_px, spacing_px, lattice_radius_px, azimuth_deg)
    return true + _isotropic_errors(len(true), click_error_px, rng)


def write_demo_annotations(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    seed: int = 0,
    binning: int = 2,
    centre_error_px: float = 5.0,
    radius_error_px: float = 4.0,
    click_error_px: float = 1.0,
    box_px: int | None = None,
    pixel_size_angstrom: float | None = None,
) -> list[Path]:
    """Write a simulated user's annotations for a synthetic data set.

    Parameters
    ----------
    dataset_dir : str or PathLike
        Output folder of :func:`stasnake.synth.generate_dataset` (reads
        ``truth/manifest.json`` and ``truth/{ts}/vlps.csv``).
    out_dir : str or PathLike
        Folder to write into (e.g. ``demo/annotations``): ``{ts}/dipoles.csv``,
        ``reference_center.cmm`` and ``particle_centers.cmm``. Nothing is
        written elsewhere.
    seed : int
        Random seed of the click errors.
    binning : int
        Binning of the tomograms the dipoles are clicked in.
    centre_error_px, radius_error_px : float
        Dipole click errors (binned pixels), see :func:`simulate_dipoles`.
    click_error_px : float
        RMS error of the marker clicks (pixels of the averages).
    box_px : int, optional
        Box side of the averages the markers are placed on (default: the data
        set's ``unit_box_px``).
    pixel_size_angstrom : float, optional
        Pixel size of those averages, Å (default: the data set's pixel size).

    Returns
    -------
    list of Path
        The files written.
    """
    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    manifest_path = dataset_dir / "truth" / "manifest.json"
    if not manifest_path.is_file():
        raise InputError(manifest_path, "not found: is this a stasnake synth data set?")
    manifest = json.loads(manifest_path.read_text())
    px = float(pixel_size_angstrom or manifest["pixel_size_angstrom"])
    box = int(box_px or manifest["unit_box_px"])
    spacing_px = float(manifest["config"]["lattice_spacing_angstrom"]) / px
    rng = np.random.default_rng([int(seed), 7])
    written: list[Path] = []
    lattice_radii = []
    for series in manifest["tiltseries"]:
        name = series["name"]
        vlps = pd.read_csv(dataset_dir / "truth" / name / "vlps.csv")
        lattice_radii.extend(vlps["lattice_radius_px"] * manifest["pixel_size_angstrom"] / px)
        path = out_dir / name / "dipoles.csv"
        write_dipoles(
            path, simulate_dipoles(vlps, rng, centre_error_px, radius_error_px, binning), binning
        )
        written.append(path)
    marker_radius = 1.5 * px
    centre = simulate_reference_center(box, rng, click_error_px)
    path = out_dir / "reference_center.cmm"
    write_cmm(
        path,
        pixels_to_markers(centre, px, radius_angstrom=marker_radius),
        set_name="reference center",
    )
    written.append(path)
    lattice_radius = float(np.mean(lattice_radii)) if lattice_radii else None
    units = simulate_particle_centers(box, spacing_px, rng, click_error_px, lattice_radius)
    path = out_dir / "particle_centers.cmm"
    write_cmm(
        path,
        pixels_to_markers(units, px, radius_angstrom=marker_radius),
        set_name="particle centers",
    )
    written.append(path)
    return written
