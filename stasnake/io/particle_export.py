"""Particle files: the stasnake particle stack, Dynamo data folders and RELION subtomograms.

stasnake particle stack (``results/particles/{ts}/particles.mrc``)
    One MRC volume stack (mode 2, float32, ``ispg = 401``, ``mz = b``): ``n``
    boxes of ``b x b x b`` voxels stored one after the other, so ``nz = n * b``.
    Box ``i`` belongs to row ``i`` of the table written next to it
    (``particles.tbl``) and occupies z planes ``i*b .. (i+1)*b - 1``.
    ``mrcfile.mmap(path).data`` (and ``read_mrc(path, mmap=True)``) return an
    ``(n, b, b, b)`` array whose ``[i]`` reads only that box. See
    docs/particles.md.

Dynamo data folder (``dtcrop`` / ``dynamo_table_crop`` output)
    ``<folder>/particle_<tag>.em`` (tag zero-padded to ``tag_padding``
    digits, Dynamo's default 5: ``particle_00012.em``) plus the table
    ``<folder>/crop.tbl`` that indexes exactly these particles, and for
    several tomograms ``<folder>/indices_column20.doc`` (table column 20 ->
    tomogram file). Particles are never rotated or shifted; poses and shifts
    live in the table (Dynamo wiki "Particle extraction", "Data folder").
    ``.em`` data are stored x fastest, exactly as MATLAB/Dynamo read them.

RELION subtomograms (``relion_tomo_subtomo`` naming)
    ``<out>/Subtomograms/<rlnTomoName>/<tag>_data.mrc``: RELION builds the name
    from ``rlnTomoParticleName`` (``TS_01/12``) as ``Subtomograms/`` + name +
    ``_data.mrc`` (``SubtomoProgram::getOutputFilename``); stasnake's particle
    names are ``<tomo>/<tag>``. ``<out>/particles.star`` lists them in
    ``rlnImageName``. These are boxes cropped from the reconstructed
    tomogram, not RELION's CTF-premultiplied pseudo-subtomograms: no
    ``rlnCtfImage`` (weights) is written and ``rlnCtfDataAreCtfPremultiplied = 0``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.geometry.relion import table_to_relion_particles
from stasnake.io.atomic import atomic_output
from stasnake.io.dynamo_doc import write_doc
from stasnake.io.dynamo_table import write_table
from stasnake.io.em import write_em
from stasnake.io.mrc import MrcSlabWriter, read_mrc, write_mrc
from stasnake.io.star import write_star

DYNAMO_TAG_PADDING = 5
DYNAMO_TABLE_NAME = "crop.tbl"
DYNAMO_DOC_NAME = "indices_column20.doc"
_CHUNK_BYTES = 64 * 2**20


# ---------------------------------------------------------------------- the stack
def write_particle_stack(
    path: str | os.PathLike,
    boxes: Iterable[np.ndarray],
    n_particles: int,
    box_size: int,
    pixel_size_angstrom: float,
    chunk_bytes: int = _CHUNK_BYTES,
) -> None:
    """Stream boxes into an MRC volume stack atomically, with bounded memory.

    Boxes are gathered into chunks of at most ``chunk_bytes`` (at least one
    box) and written with :class:`stasnake.io.mrc.MrcSlabWriter`; the header
    is then marked as a volume stack of ``box_size`` deep volumes. Peak memory
    is about one chunk plus one box, whatever ``n_particles``.

    Parameters
    ----------
    path : str or PathLike
        Output ``.mrc``; appears only when all ``n_particles`` boxes were written.
    boxes : iterable of np.ndarray
        (b, b, b) (z, y, x) boxes in stack order, e.g. :func:`stasnake.sta.crop.iter_crop`.
    n_particles : int
        Number of boxes the iterable yields (the stack size is fixed up front).
    box_size : int
        Side ``b`` in pixels.
    pixel_size_angstrom : float
        Pixel size in Å for the header.
    chunk_bytes : int
        Size of the write buffer in bytes.

    Raises
    ------
    ValueError
        A box of the wrong shape, or more or fewer boxes than ``n_particles``.
    """
    n, b = int(n_particles), int(box_size)
    if n == 0:
        write_mrc(path, np.zeros((0, b, b, b), np.float32), pixel_size_angstrom)
        return
    per_chunk = max(1, int(chunk_bytes) // (4 * b**3))
    buffer = np.empty((min(per_chunk, n), b, b, b), np.float32)
    with atomic_output(path) as tmp:
        with MrcSlabWriter(tmp, (n * b, b, b), pixel_size_angstrom) as writer:
            written = filled = 0
            for box in boxes:
                box = np.asarray(box)
                if box.shape != (b, b, b):
                    raise ValueError(
                        f"box {written + filled} has shape {box.shape}, expected {(b, b, b)}"
                    )
                if written + filled >= n:
                    raise ValueError(f"more than {n} boxes for a stack of {n}")
                buffer[filled] = box
                filled += 1
                if filled == len(buffer):
                    writer.write_z_slab(written * b, buffer.reshape(-1, b, b))
                    written, filled = written + filled, 0
            if filled:
                writer.write_z_slab(written * b, buffer[:filled].reshape(-1, b, b))
                written += filled
            if written != n:
                raise ValueError(f"got {written} boxes for a stack of {n}")
        _mark_volume_stack(tmp, b)


def _mark_volume_stack(path: Path, box_size: int) -> None:
    """Set ``ispg = 401`` and ``mz = b`` (and the cell's z length) in an MRC header in place."""
    with mrcfile.mmap(path, mode="r+") as mrc:
        voxel = float(mrc.voxel_size.x)
        mrc.header.ispg = 401
        mrc.header.mz = int(box_size)
        mrc.header.cella.z = voxel * int(box_size)


def read_particle_stack(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Memory-map a particle stack.

    Returns
    -------
    particles : np.ndarray
        Read-only (n, b, b, b) memmap (z, y, x per box); ``particles[i]`` reads box i only.
    pixel_size_angstrom : float
        From the header.
    """
    data, apix = read_mrc(path, mmap=True)
    if data.ndim == 3 and data.shape[0] == data.shape[1] == data.shape[2]:
        data = data[None]  # a single box written as a plain volume
    if data.ndim != 4 or not data.shape[1] == data.shape[2] == data.shape[3]:
        raise InputError(path, f"not a particle stack of cubic boxes: data shape {data.shape}")
    return data, apix


def _stack_and_pixel(
    stack, pixel_size_angstrom: float | None, n_rows: int
) -> tuple[np.ndarray, float]:
    if isinstance(stack, str | os.PathLike):
        data, apix = read_particle_stack(stack)
        where = str(stack)
    else:
        data, apix, where = np.asarray(stack), 0.0, "<stack>"
        if data.ndim == 3:
            data = data[None]
    if pixel_size_angstrom is not None:
        apix = float(pixel_size_angstrom)
    if data.ndim != 4 or len(data) != n_rows:
        raise InputError(
            where, f"stack of shape {data.shape} does not match a table of {n_rows} rows"
        )
    return data, float(apix)


def _check_tags(table: pd.DataFrame, source: str) -> np.ndarray:
    tags = table["tag"].to_numpy()
    if len(tags) and (np.any(tags < 1) or np.any(tags != np.rint(tags))):
        i = int(np.flatnonzero((tags < 1) | (tags != np.rint(tags)))[0])
        raise InputError(source, f"row {i + 1}: tag {tags[i]} is not a positive integer")
    tags = tags.astype(np.int64)
    unique, counts = np.unique(tags, return_counts=True)
    if np.any(counts > 1):
        raise InputError(
            source,
            f"duplicate tags {unique[counts > 1][:5].tolist()}: particle files would collide",
        )
    return tags


# ---------------------------------------------------------------------- Dynamo
def dynamo_particle_filename(
    tag: int, tag_padding: int = DYNAMO_TAG_PADDING, ext: str = "em"
) -> str:
    """Dynamo's particle file name, ``particle_00012.em`` for tag 12 (longer tags are not cut)."""
    return f"particle_{int(tag):0{int(tag_padding)}d}.{ext}"


def export_dynamo_data_folder(
    stack,
    table: pd.DataFrame,
    folder: str | os.PathLike,
    pixel_size_angstrom: float | None = None,
    tag_padding: int = DYNAMO_TAG_PADDING,
    tomogram_paths: dict[int, str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a Dynamo data folder from a particle stack, one particle at a time.

    Parameters
    ----------
    stack : str, PathLike or np.ndarray
        The particle stack (path: memory-mapped) or an (n, b, b, b) array; box
        ``i`` belongs to table row ``i``.
    table : pd.DataFrame
        The table of the stack (``particles.tbl``: ``x, y, z`` the box centre,
        ``dx, dy, dz`` the particle centre's offset from it). Written unchanged
        as ``crop.tbl``.
    folder : str or PathLike
        The data folder to create.
    pixel_size_angstrom : float, optional
        For the ``.em`` headers (OBJ parameter); default: the stack's header.
    tag_padding : int
        Digits of the zero-padded tag in the file names (Dynamo default 5).
    tomogram_paths : dict of int to str, optional
        Table ``tomo`` -> tomogram file, written as ``indices_column20.doc``.
    overwrite : bool
        Replace an existing folder (otherwise an existing folder is an error).

    Returns
    -------
    Path
        The folder. It is assembled in a hidden sibling and renamed at the end,
        so it appears complete or not at all.

    Raises
    ------
    InputError
        Stack and table of different length; tags that are not unique positive integers.
    """
    folder = Path(folder)
    source = str(folder / DYNAMO_TABLE_NAME)
    tags = _check_tags(table, source)
    data, apix = _stack_and_pixel(stack, pixel_size_angstrom, len(table))
    if folder.exists() and not overwrite:
        raise FileExistsError(f"{folder} exists; pass overwrite=True to replace it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=folder.parent))
    try:
        for i, tag in enumerate(tags):
            write_em(
                tmp / dynamo_particle_filename(tag, tag_padding),
                np.asarray(data[i], np.float32),
                apix,
            )
        write_table(tmp / DYNAMO_TABLE_NAME, table)
        if tomogram_paths:
            write_doc(tmp / DYNAMO_DOC_NAME, tomogram_paths)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return folder


# ---------------------------------------------------------------------- RELION
def relion_subtomogram_path(particle_name: str, tomo_name: str) -> str:
    """RELION's subtomogram file, relative to the job folder: ``Subtomograms/TS_01/12_data.mrc``.

    As ``relion_tomo_subtomo``: a particle name with a slash (``TS_01/12``)
    is used as is, otherwise it goes into a folder named after the tomogram.
    """
    name = str(particle_name) if "/" in str(particle_name) else f"{tomo_name}/{particle_name}"
    return f"Subtomograms/{name}_data.mrc"


def export_relion_subtomograms(
    stack,
    table: pd.DataFrame,
    output_dir: str | os.PathLike,
    tomo_names: dict[int, str],
    pixel_size_angstrom: float,
    version: int = 5,
    tomogram_sizes_xyz: dict[str, tuple] | None = None,
    binning: float = 1.0,
    invert_contrast: bool = True,
    optics: dict | None = None,
    project_dir: str | os.PathLike | None = None,
    star_name: str | None = "particles.star",
) -> dict[str, pd.DataFrame | dict]:
    """Write one MRC per particle with RELION names and a ``particles.star`` that lists them.

    Parameters
    ----------
    stack : str, PathLike or np.ndarray
        The particle stack (path: memory-mapped) or an (n, b, b, b) array; box
        ``i`` belongs to table row ``i``.
    table : pd.DataFrame
        The stack's table: ``x, y, z`` the box centre, ``dx, dy, dz`` the
        particle centre's offset from it (pixels of the tomogram).
    output_dir : str or PathLike
        Job folder: gets ``Subtomograms/<tomo>/<tag>_data.mrc`` and ``particles.star``.
    tomo_names : dict of int to str
        Table ``tomo`` -> ``rlnTomoName``.
    pixel_size_angstrom : float
        Unbinned tilt-series pixel size in Å (``rlnTomoTiltSeriesPixelSize``).
    version : {4, 5}
        Coordinate convention, as :func:`stasnake.geometry.relion.table_to_relion_particles`.
    tomogram_sizes_xyz : dict, optional
        ``rlnTomoName`` -> unbinned (nx, ny, nz); required for version 5.
    binning : float
        The tomogram (and the boxes) are binned by this factor: the image pixel
        size ``rlnImagePixelSize`` is ``pixel_size_angstrom * binning``.
    invert_contrast : bool
        Write ``-box`` (protein-bright, as RELION expects; the tomogram is protein-dark).
    optics : dict, optional
        Extra optics columns, e.g. ``{"rlnVoltage": 300.0, "rlnSphericalAberration": 2.7,
        "rlnAmplitudeContrast": 0.1}``.
    project_dir : str or PathLike, optional
        ``rlnImageName`` is written relative to this folder (where RELION runs);
        default ``output_dir`` itself (``Subtomograms/...``).
    star_name : str or None
        File name of the star file in ``output_dir``; None writes no star file
        (to merge the blocks of several stacks, e.g. one per tomogram, into one).

    Returns
    -------
    dict
        The star blocks: ``"general"`` (version 5: ``rlnTomoSubTomosAre2DStacks = 0``),
        ``"optics"`` and ``"particles"``. The box centre goes to the coordinates,
        the offset to ``rlnOrigin{X,Y,Z}Angst = -(dx, dy, dz) * image pixel size``,
        so RELION's centre ``coordinate - origin`` is ``x + dx``.
    """
    output_dir = Path(output_dir)
    source = str(output_dir / (star_name or "particles.star"))
    _check_tags(table, source)
    data, _ = _stack_and_pixel(stack, pixel_size_angstrom, len(table))
    image_apix = float(pixel_size_angstrom) * float(binning)
    box_centres = table.copy()
    box_centres[["dx", "dy", "dz"]] = 0.0
    blocks = table_to_relion_particles(
        box_centres,
        tomo_names,
        pixel_size_angstrom,
        version=version,
        tomogram_sizes_xyz=tomogram_sizes_xyz,
        binning=binning,
        half_sets=True,
    )
    particles = blocks["particles"]
    remainder = table[["dx", "dy", "dz"]].to_numpy(np.float64)
    for k, axis in enumerate("XYZ"):
        particles[f"rlnOrigin{axis}Angst"] = -remainder[:, k] * image_apix
    base = Path(project_dir) if project_dir is not None else output_dir
    names = []
    pairs = zip(particles["rlnTomoParticleName"], particles["rlnTomoName"], strict=True)
    for i, (particle_name, tomo) in enumerate(pairs):
        path = output_dir / relion_subtomogram_path(particle_name, tomo)
        box = np.asarray(data[i], np.float32)
        write_mrc(path, -box if invert_contrast else box, image_apix)
        names.append(os.path.relpath(path, base))
    particles.insert(particles.columns.get_loc("rlnTomoParticleName") + 1, "rlnImageName", names)
    optics_block = blocks["optics"].assign(
        rlnImagePixelSize=image_apix,
        rlnImageSize=int(data.shape[-1]),
        rlnImageDimensionality=3,
        rlnCtfDataAreCtfPremultiplied=0,
        **(optics or {}),
    )
    out = {"optics": optics_block, "particles": particles}
    if version == 5:
        out = {"general": {"rlnTomoSubTomosAre2DStacks": 0}, **out}
    if star_name is not None:
        write_star(output_dir / star_name, out)
    return out
