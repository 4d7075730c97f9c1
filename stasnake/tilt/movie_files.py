"""Movie input: find each tilt's frame file from the SerialEM mdoc, read MRC or TIFF movies.

SerialEM records every tilt's movie in the tilt series' mdoc as
``SubFramePath`` (an absolute path on the acquisition computer, usually
Windows, e.g. ``D:\\DATA\\...\\frames\\TS_01_000_0.0.mrc``). Only its file name is
used: the movies are looked up in the folder the sample list names.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd

from stasnake.errors import InputError

MOVIE_SUFFIXES = (".mrc", ".mrcs", ".tif", ".tiff")


def frame_file_name(sub_frame_path: str) -> str:
    """The file name of a ``SubFramePath`` value, for Windows or POSIX paths."""
    return re.split(r"[\\/]", str(sub_frame_path).strip())[-1]


def find_movies(sections: pd.DataFrame, folder: str | os.PathLike, mdoc_path: str | os.PathLike) -> list[Path]:
    """The movie file of every mdoc section, in ``ZValue`` order.

    Parameters
    ----------
    sections : pd.DataFrame
        The mdoc's sections (:func:`stasnake.io.mdoc.read_mdoc`), with
        ``ZValue`` and ``SubFramePath``.
    folder : str or PathLike
        Folder holding the movies (the sample list's ``movies`` column).
    mdoc_path : str or PathLike
        The mdoc, named in errors.

    Returns
    -------
    list of Path
        ``folder / name`` for each section, sorted by ``ZValue``.

    Raises
    ------
    InputError
        When the mdoc has no ``SubFramePath``, a section lacks it, a name is
        used twice, a file is missing (all missing files are listed), or a
        format is not supported.
    """
    folder = Path(folder)
    if "SubFramePath" not in sections.columns:
        raise InputError(mdoc_path, "has no SubFramePath entries: it does not record movies (give the stack as tilt_series instead)")
    sections = sections.sort_values("ZValue")
    paths = []
    for z, value in zip(sections["ZValue"], sections["SubFramePath"], strict=True):
        if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
            raise InputError(mdoc_path, f"section ZValue = {z} has no SubFramePath")
        name = frame_file_name(value)
        if Path(name).suffix.lower() not in MOVIE_SUFFIXES:
            raise InputError(mdoc_path, f"section ZValue = {z}: movie {name!r} is not MRC or TIFF "
                                        f"(supported: {', '.join(MOVIE_SUFFIXES)}; convert EER/DM4 first)")  # fmt: skip
        paths.append(folder / name)
    names = [p.name for p in paths]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(mdoc_path, f"SubFramePath names the same movie for several sections: {duplicates}")
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(folder, f"{len(missing)} of {len(paths)} movies named in {mdoc_path} are missing: {shown}")
    return paths


def read_movie(path: str | os.PathLike) -> np.ndarray:
    """Read one movie as (n_frames, ny, nx); MRC via mrcfile, TIFF via tifffile.

    Raises
    ------
    InputError
        When the file cannot be read or is not a stack of 2-D frames.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            frames = tifffile.imread(path)
        else:
            with mrcfile.open(path, permissive=False) as mrc:
                frames = np.array(mrc.data)
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot be read as a movie ({exc})") from None
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3:
        raise InputError(path, f"a movie must be a stack of 2-D frames, got shape {frames.shape}")
    return frames
