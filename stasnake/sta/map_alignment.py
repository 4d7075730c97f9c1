"""Rigid alignment of maps (not particles): average of averages, half maps, maps against a truth.

Protocol steps (``docs/protocol.md``; Dynamo HIV-1 VLP protocol):

* **5A, average of averages** (:func:`average_of_averages`): the per-tomogram
  averages are treated as particles (tag = tomogram, no missing-wedge
  compensation) and aligned iteratively to their own merged, C_n-symmetrised
  mean. The table it returns maps points marked once in the merged map into
  every per-tomogram average (:func:`stasnake.sta.table_ops.subbox`).
* **9, half maps** (:func:`align_half_maps`): "the even half-map is aligned to
  the odd half-map with dalign; the resulting transformation is applied to the
  even table with dynamo_table_rigid", then the even particles are re-averaged.
* **Validation** (:func:`align_to_truth`, :func:`compare_with_truth_aligned`):
  the final frame of the protocol is set by user clicks, so a final map is
  rigidly aligned onto the synthetic truth (and, separately, onto its mirror
  image for the hand check) before the FSC against the truth.

Convention (the particles' one, ``docs/geometry-conventions``): the pose of a
``moving`` map relative to a ``reference`` map is the active rotation ``R``
(reference -> moving, on (x, y, z) column vectors) and shift ``s`` (pixels,
(x, y, z)) with::

    moving(R p + c + s) ~ reference(p + c)

``c`` the box centre (index ``n // 2``). ``rotate_volume(moving, R, s)`` then
brings ``moving`` into the reference frame, and ``(R, s)`` is exactly the
``(R_a, s_a)`` that :func:`stasnake.sta.table_ops.rigid_transform` takes to move
the table that made ``moving`` into the reference's frame.

Scoring: the particle aligner (:func:`stasnake.sta.align.align_particles`)
with a full Fourier sphere (tilt range -90..90: no missing wedge, every
frequency of the band counts), one "particle" per map. The optional alignment
mask multiplies the reference in its own frame (Dynamo's alignment mask).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.geometry.euler import matrix_to_dynamo_euler
from stasnake.io.dynamo_table import new_table
from stasnake.sta.align import SearchParams, align_particles, prepare_reference
from stasnake.sta.average import FULL_TILT_RANGE, symmetrize_cn
from stasnake.sta.fsc import fourier_shell_correlation
from stasnake.sta.masks import mask_from_map, subtract_masked_mean
from stasnake.sta.rotate import rotate_volume
from stasnake.sta.validate import mirror_z

#: Step 9 default: local search around the identity, cone +-10 deg, in-plane +-30 deg
#: (one C6 period), 4 deg steps refined three times (0.5 deg), shifts +-4 px.
HALF_MAP_PARAMS = SearchParams(
    cone_range=20.0,
    cone_sampling=4.0,
    inplane_range=60.0,
    inplane_sampling=4.0,
    refine=3,
    refine_factor=2.0,
    shift_limits_xyz=(4.0, 4.0, 4.0),
)


def _cube(volume, what: str) -> np.ndarray:
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise InputError(what, f"must be a cubic (n, n, n) map, got shape {vol.shape}")
    if not np.all(np.isfinite(vol)):
        raise InputError(what, "contains non-finite values (NaN or inf)")
    return vol


def _pixel_size(value) -> float:
    if not (isinstance(value, (int, float, np.number)) and np.isfinite(value) and value > 0):
        raise InputError("pixel_size_angstrom", f"must be a positive number of Å, not {value!r}")
    return float(value)


def align_map(
    moving,
    reference,
    params: SearchParams,
    start_matrix=None,
    start_shift=None,
    mask=None,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, float]:
    """Pose of a map relative to a reference map (Dynamo ``dalign``), no missing wedge.

    Parameters
    ----------
    moving, reference : array_like
        (n, n, n) maps (z, y, x) of one box, same contrast.
    params : SearchParams
        Angular scan (around ``start_matrix``), refinement, band (``low``, ``high``,
        ``dim``) and shift limits. The shift ellipsoid is centred on ``start_shift``.
    start_matrix : array_like, optional
        (3, 3) active rotation the scan is centred on; None = identity.
    start_shift : array_like, optional
        (3,) shift (x, y, z, pixels) the shift window is centred on; None = zeros.
    mask : array_like, optional
        (n, n, n) alignment mask (0..1) in the reference frame.
    device : {"cpu", "cuda"}
        Where the scoring kernels run.

    Returns
    -------
    R : np.ndarray
        (3, 3) active rotation, reference -> moving.
    s : np.ndarray
        (3,) shift, pixels (x, y, z): ``moving(R p + c + s) ~ reference(p + c)``.
    cc : float
        Normalised CC at the best pose (band-passed, masked reference).
    """
    mov = _cube(moving, "moving map")
    ref = _cube(reference, "reference map")
    if mov.shape != ref.shape:
        raise InputError("moving map", f"box {mov.shape} differs from the reference's {ref.shape}")
    r0 = np.eye(3) if start_matrix is None else np.asarray(start_matrix, dtype=np.float64)
    s0 = np.zeros(3) if start_shift is None else np.asarray(start_shift, dtype=np.float64)
    if r0.shape != (3, 3) or s0.shape != (3,):
        raise InputError(
            "start pose", f"needs a (3, 3) matrix and a (3,) shift, got {r0.shape}, {s0.shape}"
        )
    prep = prepare_reference(ref, params, mask)
    res = align_particles(
        [mov],
        r0[None],
        s0[None],
        np.array([FULL_TILT_RANGE]),
        prep,
        params,
        shift_centres_xyz=s0[None],
        device=device,
    )
    return res.matrices[0], res.shifts_xyz[0], float(res.cc[0])


def _merge(maps: Sequence[np.ndarray], matrices, shifts, symmetry_order: int) -> np.ndarray:
    """Plain mean of the maps brought into the common frame, then C_n-symmetrised."""
    acc = np.zeros(maps[0].shape, np.float64)
    for vol, r, s in zip(maps, matrices, shifts, strict=True):
        acc += rotate_volume(vol, r, s)
    return symmetrize_cn(acc / len(maps), symmetry_order)


def average_of_averages(
    averages,
    pixel_size_angstrom: float,
    params: SearchParams,
    symmetry_order: int = 6,
    iterations: int = 3,
    reference=None,
    mask=None,
    device: str = "cpu",
) -> tuple[pd.DataFrame, np.ndarray]:
    """The protocol's "average of averages" (step 5A): align per-tomogram averages to each other.

    The averages are particles (tag ``i + 1`` for ``averages[i]``, no wedge). The
    first template is their plain mean (or ``reference``); each iteration aligns
    every average to the template (local scan of ``params`` around its current
    pose, shift window centred on its current shift: Dynamo ``area_search_modus``
    2), then the template becomes the plain mean of the aligned averages
    (:func:`stasnake.sta.rotate.rotate_volume`, trilinear), C_n-symmetrised about z
    (:func:`stasnake.sta.average.symmetrize_cn`).

    Parameters
    ----------
    averages : sequence of array_like
        n (b, b, b) maps (z, y, x), one per tomogram, same contrast.
    pixel_size_angstrom : float
        Pixel size of the averages, Å (written to the table's ``apix``).
    params : SearchParams
        Search of every iteration (e.g. the per-tomogram project's last round).
    symmetry_order : int
        N of the C_n symmetry imposed on the merged map (1 = none).
    iterations : int
        Alignment iterations (>= 1).
    reference : array_like, optional
        (b, b, b) first template; None = the plain mean of the averages.
    mask : array_like, optional
        (b, b, b) alignment mask in the template frame.
    device : {"cpu", "cuda"}
        Where the scoring kernels run.

    Returns
    -------
    table : pd.DataFrame
        Dynamo table, one row per average: ``tag`` and ``tomo`` = ``i + 1``; pose
        (tdrot, tilt, narot) and shift (dx, dy, dz) of average ``i`` relative to the
        merged map, ``average_i(R_i p + c + s_i) ~ merged(p + c)``; ``x = y = z =
        b // 2 + 1`` (the average's centre, 1-based) so that
        ``table_ops.subbox(table.iloc[[i]], markers, b)`` returns the markers of the
        merged map as 1-based (x, y, z) pixel positions in average ``i``'s box;
        ``cc`` of the last iteration; ``ftype`` 0 (no wedge, range -90..90);
        ``apix``.
    merged : np.ndarray
        (b, b, b) float32 merged map of the last iteration's poses.
    """
    maps = [_cube(a, f"average {i + 1}") for i, a in enumerate(averages)]
    if not maps:
        raise InputError("averages", "no averages to merge")
    b = maps[0].shape[0]
    for i, vol in enumerate(maps):
        if vol.shape != maps[0].shape:
            raise InputError(
                f"average {i + 1}", f"box {vol.shape} differs from average 1's {maps[0].shape}"
            )
    apix = _pixel_size(pixel_size_angstrom)
    if (
        isinstance(iterations, bool)
        or not isinstance(iterations, (int, np.integer))
        or iterations < 1
    ):
        raise InputError("iterations", f"must be an integer >= 1, not {iterations!r}")
    n = len(maps)
    matrices = np.repeat(np.eye(3)[None], n, axis=0)
    shifts = np.zeros((n, 3))
    if reference is None:
        template = np.mean(np.stack(maps), axis=0, dtype=np.float64).astype(np.float32)
    else:
        template = _cube(reference, "reference")
        if template.shape != maps[0].shape:
            raise InputError(
                "reference", f"box {template.shape} differs from the averages' {maps[0].shape}"
            )
    tilt = np.repeat(np.array([FULL_TILT_RANGE]), n, axis=0)
    cc = np.zeros(n)
    merged = template
    for _ in range(int(iterations)):
        prep = prepare_reference(template, params, mask)
        res = align_particles(
            maps, matrices, shifts, tilt, prep, params, shift_centres_xyz=shifts, device=device
        )
        matrices, shifts, cc = res.matrices, res.shifts_xyz, res.cc
        merged = _merge(maps, matrices, shifts, symmetry_order)
        template = merged
    centre = float(b // 2 + 1)
    table = new_table(
        n, ftype=0, ymintilt=-90.0, ymaxtilt=90.0, x=centre, y=centre, z=centre, apix=apix
    )
    table["tomo"] = np.arange(1, n + 1)
    table[["dx", "dy", "dz"]] = shifts
    table[["tdrot", "tilt", "narot"]] = matrix_to_dynamo_euler(matrices).reshape(-1, 3)
    table["cc"] = cc
    return table, merged


def align_half_maps(
    half1,
    half2,
    pixel_size_angstrom: float,
    params: SearchParams | None = None,
    mask=None,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, float]:
    """Align the even half map onto the odd one (protocol step 9, ``dalign`` before ``dynamo_table_rigid``).

    ``half1`` (the even half, moving) is aligned to ``half2`` (the odd half,
    fixed) by a local search around the identity. To put the even half into the
    odd half's frame, move the **even table** (the one ``half1`` was averaged
    from) with the returned pose unchanged and re-average it::

        R, s, cc = align_half_maps(half1, half2, apix)
        table1_new = table_ops.rigid_transform(table1, R, s)   # (R_a, s_a) = (R, s)
        half1_new = average_particles(particles1, *table_poses(table1_new), ...)

    Why: ``half1(R p + c + s) ~ half2(p + c)`` is the ``average(R_a p + c + s_a)
    = new_ref(p + c)`` of :func:`~stasnake.sta.table_ops.rigid_transform`, whose
    new poses ``R_i @ R`` and shifts ``s_i + R_i @ s`` average to ``half2``'s
    frame. Re-averaging (rather than rotating ``half1``) avoids a second
    interpolation and the edge artefacts of rotating a map.

    Parameters
    ----------
    half1, half2 : array_like
        (n, n, n) half maps (z, y, x), same contrast: moving (even) and fixed (odd).
    pixel_size_angstrom : float
        Pixel size of the maps, Å (checked; the band of ``params`` is in Fourier pixels).
    params : SearchParams, optional
        None = :data:`HALF_MAP_PARAMS` (cone +-10 deg, in-plane +-30 deg, 4 deg steps
        refined to 0.5 deg, shifts +-4 px, full band).
    mask : array_like, optional
        (n, n, n) alignment mask in ``half2``'s frame.
    device : {"cpu", "cuda"}
        Where the scoring kernels run.

    Returns
    -------
    R, s, cc
        See :func:`align_map`: ``half1(R p + c + s) ~ half2(p + c)``.
    """
    _pixel_size(pixel_size_angstrom)
    return align_map(
        half1, half2, HALF_MAP_PARAMS if params is None else params, mask=mask, device=device
    )


def _truth_params(box: int, symmetry_order: int) -> tuple[SearchParams, SearchParams]:
    """Coarse global scan (binned x2) and the local refinement of :func:`align_to_truth`."""
    quarter = box / 4.0
    dim = max(8, box // 2)
    coarse = SearchParams(
        cone_range=60.0,
        cone_sampling=7.5,
        inplane_range=360.0,
        inplane_sampling=7.5,
        refine=1,
        dim=dim if dim < box else None,
        symmetry_order=int(symmetry_order),
        shift_limits_xyz=(quarter, quarter, quarter),
    )
    fine = SearchParams(
        cone_range=8.0,
        cone_sampling=2.0,
        inplane_range=8.0,
        inplane_sampling=2.0,
        refine=2,
        shift_limits_xyz=(3.0, 3.0, 3.0),
    )
    return coarse, fine


def align_to_truth(
    volume,
    truth,
    pixel_size_angstrom: float,
    symmetry_order: int = 6,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Global rigid alignment of a final map onto the truth map (before an FSC against the truth).

    Search: every in-plane angle over one period ``360 / symmetry_order``, the z axis
    within a cone of +-30 deg, shifts up to a quarter box (binned x2, 7.5 deg steps
    refined once), then a local refinement at full size (+-4 deg, 0.5 deg steps,
    +-3 px around the coarse shift). An upside-down map (z axis flipped) is not searched.

    Parameters
    ----------
    volume, truth : array_like
        (n, n, n) maps (z, y, x), both protein-positive.
    pixel_size_angstrom : float
        Pixel size of both maps, Å (checked).
    symmetry_order : int
        N of the truth's C_n symmetry about z (restricts the in-plane scan).
    device : {"cpu", "cuda"}
        Where the scoring kernels run.

    Returns
    -------
    aligned : np.ndarray
        (n, n, n) float32 ``volume`` in the truth frame, ``rotate_volume(volume, R, s)``
        with cubic splines.
    R, s : np.ndarray
        (3, 3) and (3,): ``volume(R p + c + s) ~ truth(p + c)``.
    """
    _pixel_size(pixel_size_angstrom)
    vol = _cube(volume, "map")
    ref = _cube(truth, "truth map")
    if vol.shape != ref.shape:
        raise InputError("truth map", f"box {ref.shape} differs from the map's {vol.shape}")
    coarse, fine = _truth_params(vol.shape[0], symmetry_order)
    r, s, _ = align_map(vol, ref, coarse, device=device)
    r, s, _ = align_map(vol, ref, fine, start_matrix=r, start_shift=s, device=device)
    return rotate_volume(vol, r, s, order=3), r, s


def compare_with_truth_aligned(
    volume,
    pixel_size_angstrom: float,
    truth,
    symmetry_order: int = 6,
    device: str = "cpu",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """FSC of a map against the truth and against the truth's mirror, each after its own alignment.

    Like :func:`stasnake.sta.validate.compare_with_truth` (soft mask from the
    compared truth map, :func:`~stasnake.sta.masks.mask_from_map`; each map's mean
    under the mask removed), but the map is first aligned by :func:`align_to_truth`
    onto the truth, and separately onto the mirrored truth
    (:func:`~stasnake.sta.validate.mirror_z`), so that a frame set by user clicks
    does not decide the hand check: a map of the right hand correlates better with
    the truth than with its mirror even when each is given its best pose.

    Parameters
    ----------
    volume, truth : array_like
        (n, n, n) maps (z, y, x), both protein-positive, same pixel size.
    pixel_size_angstrom : float
        Pixel size, Å.
    symmetry_order : int
        C_n order of the truth.
    device : {"cpu", "cuda"}
        Where the scoring kernels run.

    Returns
    -------
    fsc, fsc_mirrored : pd.DataFrame
        See :func:`stasnake.sta.fsc.fourier_shell_correlation`.
    """
    ref = _cube(truth, "truth map")
    out = []
    for target in (ref, mirror_z(ref)):
        aligned, _, _ = align_to_truth(volume, target, pixel_size_angstrom, symmetry_order, device)
        mask = mask_from_map(target)
        out.append(
            fourier_shell_correlation(
                subtract_masked_mean(aligned, mask),
                subtract_masked_mean(target, mask),
                pixel_size_angstrom=pixel_size_angstrom,
                mask=mask,
            )
        )
    return out[0], out[1]


__all__: Sequence[str] = [
    "HALF_MAP_PARAMS",
    "align_map",
    "average_of_averages",
    "align_half_maps",
    "align_to_truth",
    "compare_with_truth_aligned",
]
