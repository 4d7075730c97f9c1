"""STAR files (RELION) via the ``starfile`` package.

Every block comes back as a DataFrame: loop blocks as they are, simple
``_key value`` blocks (e.g. ``data_general``, ``data_job``) as one-row
DataFrames. ``starfile`` 0.5 works with pandas 3 (string columns get pandas'
``str`` dtype). Name-like columns (``rlnTomoName``, ``rlnMicrographName``...)
are always parsed as strings so that a tomogram called ``1`` stays ``"1"``.

Writing uses ``%#.9g`` for floats (nine significant digits, decimal point
always present so float columns stay float on reading back) and is atomic.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import starfile

from stasnake.errors import InputError
from stasnake.io.atomic import atomic_output

STRING_COLUMNS = (
    "rlnTomoName", "rlnMicrographName", "rlnOpticsGroupName", "rlnTomoParticleName",
    "rlnImageName", "rlnCtfImage", "rlnMicrographMovieName", "rlnTomoTiltSeriesStarFile",
    "rlnTomoReconstructedTomogram", "rlnTomoImportImodDir", "rlnTomoTiltSeriesName",
)  # fmt: skip
RELION31_COORDINATES = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
RELION5_COORDINATES = (
    "rlnCenteredCoordinateXAngst",
    "rlnCenteredCoordinateYAngst",
    "rlnCenteredCoordinateZAngst",
)
TOMOGRAM_COLUMNS = (
    "rlnTomoName",
    "rlnTomoSizeX",
    "rlnTomoSizeY",
    "rlnTomoSizeZ",
    "rlnTomoTiltSeriesPixelSize",
)


def read_star(path: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Read every block of a STAR file.

    Parameters
    ----------
    path : str or PathLike
        The ``.star`` file.

    Returns
    -------
    dict[str, pd.DataFrame]
        Block name (without ``data_``; ``""`` for an unnamed block, ``block_N``
        where starfile numbers unnamed blocks of multi-block files) -> table.
        Key-value blocks become one-row DataFrames.

    Raises
    ------
    InputError
        Missing file, a parse failure, or a file without any block.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "STAR file does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = starfile.read(path, always_dict=True, parse_as_string=list(STRING_COLUMNS))
    except Exception as exc:  # starfile raises many types on bad input
        raise InputError(path, f"not a readable STAR file ({type(exc).__name__}: {exc})") from None
    if not raw:
        raise InputError(path, "no data_ blocks in STAR file")
    text_has_nan = None
    blocks: dict[str, pd.DataFrame] = {}
    for name, block in raw.items():
        if isinstance(block, pd.DataFrame):
            if len(block) and bool(block.iloc[:, -1].isna().any()):
                # starfile pads short loop rows with NaN instead of failing: a
                # missing last field without any "nan" in the text is a short row
                if text_has_nan is None:
                    text = path.read_text(encoding="utf-8", errors="replace").lower()
                    text_has_nan = "nan" in text or "<na>" in text
                if not text_has_nan:
                    rows = block.index[block.iloc[:, -1].isna()].tolist()
                    raise InputError(
                        path, f"block data_{name}: loop row(s) {rows[:5]} have too few fields"
                    )
            blocks[name] = block
        elif isinstance(block, dict):
            blocks[name] = pd.DataFrame({k: [v] for k, v in block.items()})
        else:
            raise InputError(path, f"block {name!r}: unexpected content {type(block).__name__}")
    return blocks


def write_star(path: str | os.PathLike, blocks: dict[str, pd.DataFrame | dict]) -> None:
    """Write blocks to a STAR file atomically.

    Parameters
    ----------
    path : str or PathLike
        Output ``.star`` file.
    blocks : dict
        Block name (without ``data_``) -> DataFrame (written as a loop) or
        dict (written as ``_key value`` pairs).
    """
    with atomic_output(path) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            starfile.write(dict(blocks), tmp, float_format="%#.9g")


def require_columns(
    df: pd.DataFrame, columns: Iterable[str], path: str | os.PathLike, block: str
) -> None:
    """Raise InputError naming the file, block and missing columns unless all are present."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(path, f"block data_{block} lacks column(s) {', '.join(missing)}")


def _particle_block(blocks: dict[str, pd.DataFrame], path: Path) -> str:
    if "particles" in blocks:
        return "particles"
    candidates = [
        k for k, v in blocks.items() if k not in ("optics", "general") and len(v.columns) > 1
    ]
    if len(candidates) == 1:
        return candidates[0]
    raise InputError(
        path, f"no data_particles block (blocks: {', '.join(repr(k) for k in blocks)})"
    )


def read_relion_particles(path: str | os.PathLike) -> tuple[pd.DataFrame | None, pd.DataFrame]:
    """Read a RELION particle STAR file (3.0/Warp, 3.1/4 or 5 conventions).

    Parameters
    ----------
    path : str or PathLike
        Particle ``.star`` file.

    Returns
    -------
    optics : pd.DataFrame or None
        The ``data_optics`` block (None for pre-3.1 single-block files).
    particles : pd.DataFrame
        The ``data_particles`` block (or the only loop block). Coordinates are
        either ``rlnCoordinateX/Y/Z`` (pixels of the tomogram, RELION 3.1/4,
        Warp) or ``rlnCenteredCoordinateX/Y/ZAngst`` (Å from the tomogram
        centre, RELION 5). ``particles.attrs["coordinates"]`` is
        ``"pixels"`` or ``"centered_angstrom"``.

    Raises
    ------
    InputError
        Unreadable file, no particle block, no ``rlnTomoName`` /
        ``rlnMicrographName`` column, or no coordinate columns.
    """
    path = Path(path)
    blocks = read_star(path)
    name = _particle_block(blocks, path)
    particles = blocks[name]
    if "rlnTomoName" not in particles.columns and "rlnMicrographName" not in particles.columns:
        raise InputError(path, f"block data_{name} lacks column rlnTomoName (or rlnMicrographName)")
    if all(c in particles.columns for c in RELION5_COORDINATES):
        particles.attrs["coordinates"] = "centered_angstrom"
    elif all(c in particles.columns for c in RELION31_COORDINATES):
        particles.attrs["coordinates"] = "pixels"
    else:
        missing = [c for c in RELION31_COORDINATES if c not in particles.columns]
        raise InputError(
            path,
            f"block data_{name} lacks coordinate column(s) {', '.join(missing)} "
            f"(or RELION 5 {', '.join(RELION5_COORDINATES)})",
        )
    return blocks.get("optics"), particles


def read_relion_tomograms(path: str | os.PathLike) -> pd.DataFrame:
    """Read a RELION 5 ``tomograms.star`` (one row per tomogram).

    Returns
    -------
    pd.DataFrame
        The ``data_global`` block (or the only block) with at least
        rlnTomoName, rlnTomoSizeX/Y/Z (unbinned pixels) and
        rlnTomoTiltSeriesPixelSize (Å); usually also rlnTomoTomogramBinning,
        rlnVoltage, rlnSphericalAberration, rlnAmplitudeContrast, rlnTomoHand,
        rlnTomoTiltSeriesStarFile, rlnTomoReconstructedTomogram.
    """
    path = Path(path)
    blocks = read_star(path)
    if "global" in blocks:
        name = "global"
    elif len(blocks) == 1:
        name = next(iter(blocks))
    else:
        raise InputError(
            path, f"no data_global block (blocks: {', '.join(repr(k) for k in blocks)})"
        )
    df = blocks[name]
    require_columns(df, TOMOGRAM_COLUMNS, path, name)
    return df
