"""The protocol's manual annotation steps as checkpoints.

The Dynamo HIV-1 VLP protocol needs three kinds of hand-made annotation
(protocol steps 2A, 3B and 5B). Each is a file the *user* writes under
``annotations/``; the workflow only reads them:

============================  =====================================================
``annotations/{ts}/dipoles``  one dipole per VLP: its centre and a point on its
``.csv``                      surface, in 1-based pixels of the binned tomogram
``annotations/reference_``    one ChimeraX marker: the centre of the most central
``center.cmm``                lattice unit in the initial reference average
``annotations/particle_``     one ChimeraX marker per lattice unit centre in the
``centers.cmm``               "average of averages"
============================  =====================================================

:data:`ANNOTATION_STEPS` describes each step (path, what to mark with the
protocol's guidance, the map to open and how to prepare a viewing copy).
:func:`missing_annotations` lists what is missing for a set of tilt series
and :func:`format_missing_message` turns the list into the one message the
workflow prints before it stops. With *autopilot* on for a step, the
workflow writes a proposal under ``results/proposals/`` and uses it where
the user file is absent (:func:`annotation_source`). Nothing in this module
writes files; in particular nothing writes into ``annotations/``.

:func:`prepare_view` makes the filtered, contrast-inverted viewing copy of a
map that the protocol opens in Chimera (``prepare_average_for_chimera.m``:
``dynamo_bandpass`` then inversion); the command line runs it as
``stasnake prepare-view IN OUT --lowpass-angstrom A``.
"""

from __future__ import annotations

import os
import shlex
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft

#: Binning of the tomogram the dipoles are clicked in (protocol: "open the previously binned versions").
DEFAULT_DIPOLE_BINNING = 2
#: Columns of ``annotations/{ts}/dipoles.csv`` (1-based pixels of the binned tomogram, x y z).
DIPOLE_COLUMNS = ("center_x", "center_y", "center_z", "surface_x", "surface_y", "surface_z")


@dataclass(frozen=True)
class AnnotationStep:
    """One manual annotation step of the protocol.

    Path fields are templates: ``{ts}`` is the tilt-series name and
    ``{binning}`` the dipole binning; ``annotation`` is relative to the
    annotations folder, ``proposal`` to the proposals folder, ``map_path`` and
    ``view_path`` to the working directory.

    Attributes
    ----------
    kind : str
        ``"dipoles"``, ``"reference_center"`` or ``"particle_centers"``.
    per_tilt_series : bool
        One file per tilt series (dipoles) or one for the whole data set.
    annotation : str
        File the user writes, relative to the annotations folder.
    proposal : str
        File the autopilot writes, relative to the proposals folder.
    protocol_step : str
        Where the step sits in the protocol.
    title : str
        Short name of the step.
    what_to_mark : str
        Instructions, with the protocol's guidance.
    file_format : str
        The format the workflow reads.
    map_path : str
        The map the annotation is made on.
    map_description : str
        What that map is, in words.
    view_path : str
        Prepared viewing copy of ``map_path`` (filtered; inverted when ``view_invert``).
    view_lowpass_angstrom : float
        Default low-pass of the viewing copy, Å.
    view_invert : bool
        Invert the contrast of the viewing copy (protein bright, for isosurfaces).
    """

    kind: str
    per_tilt_series: bool
    annotation: str
    proposal: str
    protocol_step: str
    title: str
    what_to_mark: str
    file_format: str
    map_path: str
    map_description: str
    view_path: str
    view_lowpass_angstrom: float
    view_invert: bool


ANNOTATION_STEPS: dict[str, AnnotationStep] = {
    "dipoles": AnnotationStep(
        kind="dipoles",
        per_tilt_series=True,
        annotation="{ts}/dipoles.csv",
        proposal="{ts}/dipoles.csv",
        protocol_step="step 2, block A",
        title="VLP dipoles",
        what_to_mark=(
            "every visible VLP with two clicks: one on its centre, one on its surface "
            "(membrane). About 8 to 9 VLPs per tomogram. Accuracy is not critical: the "
            "alignments cope with errors of up to 40 pixels. Mark defective VLPs too; "
            "bad particles are removed later by cross-correlation thresholding."
        ),
        file_format=(
            "CSV with header "
            + ",".join(DIPOLE_COLUMNS)
            + ",binning; one row per VLP, 1-based pixels (x, y, z) of the tomogram binned by "
            "'binning' (here {binning}); lines starting with # are comments"
        ),
        map_path="results/tomograms/{ts}_bin{binning}.mrc",
        map_description="the {binning}x binned tomogram",
        view_path="results/views/{ts}_bin{binning}_view.mrc",
        view_lowpass_angstrom=40.0,
        view_invert=False,
    ),
    "reference_center": AnnotationStep(
        kind="reference_center",
        per_tilt_series=False,
        annotation="reference_center.cmm",
        proposal="reference_center.cmm",
        protocol_step="step 3, block B",
        title="particle centre in the initial reference",
        what_to_mark=(
            "one marker on the centre of the most central lattice unit (hexamer) of the "
            "initial reference average: turn the map upside down (view from the VLP inside) "
            "and mark the tip of the CA N-terminal domain at the six-fold axis. The workflow "
            "shifts every particle so that this point becomes the box centre."
        ),
        file_format="ChimeraX/Chimera marker file (.cmm), exactly one marker, Å in the map's scene",
        map_path="results/reference/initial_average.mrc",
        map_description="the initial reference average, before centring",
        view_path="results/views/initial_average_view.mrc",
        view_lowpass_angstrom=20.0,
        view_invert=True,
    ),
    "particle_centers": AnnotationStep(
        kind="particle_centers",
        per_tilt_series=False,
        annotation="particle_centers.cmm",
        proposal="particle_centers.cmm",
        protocol_step="step 5, block B",
        title="lattice unit centres in the average of averages",
        what_to_mark=(
            "one marker on the centre of every lattice unit (hexamer) visible in the "
            "average of averages: the central unit and its neighbours, marked the same way "
            "as the reference centre. Each marker becomes a candidate particle in every "
            "tomogram (subboxing), so mark only whole, well-defined units."
        ),
        file_format="ChimeraX/Chimera marker file (.cmm), one marker per unit, Å in the map's scene",
        map_path="results/reference/average_of_averages.mrc",
        map_description="the average of the per-tomogram averages",
        view_path="results/views/average_of_averages_view.mrc",
        view_lowpass_angstrom=20.0,
        view_invert=True,
    ),
}


@dataclass(frozen=True)
class MissingAnnotation:
    """An annotation file the workflow needs and does not find.

    Attributes
    ----------
    kind : str
        Key of :data:`ANNOTATION_STEPS`.
    tilt_series : str or None
        Tilt-series name for per-tilt-series steps.
    path : str
        Exact path of the file to create.
    step : AnnotationStep
        The step's description.
    map_path, view_path : str
        Map to annotate and its prepared viewing copy.
    map_ready : bool
        Whether ``map_path`` exists now (otherwise the workflow makes it once the
        annotations it depends on are in place).
    prepare_command : str
        Shell command that writes ``view_path`` from ``map_path``.
    lowpass_angstrom : float
        Low-pass of the viewing copy, Å.
    binning : int
        Dipole binning (for the file format line).
    """

    kind: str
    tilt_series: str | None
    path: str
    step: AnnotationStep
    map_path: str
    view_path: str
    map_ready: bool
    prepare_command: str
    lowpass_angstrom: float
    binning: int


def _section(config_like) -> Mapping:
    if config_like is None:
        return {}
    section = config_like.get("annotations", {}) if isinstance(config_like, Mapping) else {}
    return section or {}


def dipole_binning(config_like=None) -> int:
    """Binning of the tomogram the dipoles are clicked in: ``annotations.dipole_binning`` or 2."""
    return int(_section(config_like).get("dipole_binning", DEFAULT_DIPOLE_BINNING))


def autopilot_enabled(kind: str, autopilot=None, config_like=None) -> bool:
    """Whether the autopilot replaces a missing user file of this kind.

    Parameters
    ----------
    kind : str
        Key of :data:`ANNOTATION_STEPS`.
    autopilot : bool, mapping or iterable of str, optional
        True/False for every step, a mapping kind -> bool, or the kinds that
        are on. None: take ``annotations.autopilot`` from ``config_like``
        (same forms; default off).
    config_like : mapping, optional
        The workflow configuration (or any mapping with an ``annotations`` key).
    """
    _check_kind(kind)
    if autopilot is None:
        autopilot = _section(config_like).get("autopilot", False)
    if isinstance(autopilot, bool) or autopilot is None:
        return bool(autopilot)
    if isinstance(autopilot, Mapping):
        return bool(autopilot.get(kind, False))
    if isinstance(autopilot, str):
        return autopilot == kind
    return kind in set(autopilot)


def _check_kind(kind: str) -> AnnotationStep:
    try:
        return ANNOTATION_STEPS[kind]
    except KeyError:
        raise ValueError(
            f"unknown annotation kind {kind!r}; known: {', '.join(ANNOTATION_STEPS)}"
        ) from None


def _fill(template: str, ts: str | None, binning: int) -> str:
    return template.format(ts=ts if ts is not None else "{ts}", binning=binning)


def annotation_path(
    kind: str, ts: str | None = None, annotations_dir="annotations", config_like=None
) -> Path:
    """Path of the user's annotation file of one step (and tilt series)."""
    step = _check_kind(kind)
    if step.per_tilt_series and ts is None:
        raise ValueError(f"annotation {kind!r} is per tilt series: give ts")
    return Path(annotations_dir) / _fill(step.annotation, ts, dipole_binning(config_like))


def proposal_path(
    kind: str, ts: str | None = None, proposals_dir="results/proposals", config_like=None
) -> Path:
    """Path where the autopilot writes its proposal for one step (and tilt series)."""
    step = _check_kind(kind)
    if step.per_tilt_series and ts is None:
        raise ValueError(f"annotation {kind!r} is per tilt series: give ts")
    return Path(proposals_dir) / _fill(step.proposal, ts, dipole_binning(config_like))


def annotation_source(
    kind: str,
    ts: str | None = None,
    config_like=None,
    annotations_dir="annotations",
    autopilot=None,
    proposals_dir="results/proposals",
) -> Path | None:
    """The file a rule reads for one annotation step.

    Returns the user's file if it exists; else, with the autopilot on for
    ``kind``, the proposal path (which the workflow makes); else None (the
    step is a checkpoint that stops the workflow). A user file always wins,
    so writing one after an autopilot run switches the input to it.
    """
    user = annotation_path(kind, ts, annotations_dir, config_like)
    if user.is_file():
        return user
    if autopilot_enabled(kind, autopilot, config_like):
        return proposal_path(kind, ts, proposals_dir, config_like)
    return None


def _map_paths(step: AnnotationStep, ts, config_like) -> tuple[str, str, float]:
    section = _section(config_like)
    binning = dipole_binning(config_like)
    maps = section.get("maps", {}) or {}
    views = section.get("views", {}) or {}
    lowpass = section.get("view_lowpass_angstrom", {}) or {}
    map_path = _fill(maps.get(step.kind, step.map_path), ts, binning)
    view_path = _fill(views.get(step.kind, step.view_path), ts, binning)
    return map_path, view_path, float(lowpass.get(step.kind, step.view_lowpass_angstrom))


def prepare_command(map_path: str, view_path: str, lowpass_angstrom: float, invert: bool) -> str:
    """The ``stasnake prepare-view`` command line that writes a viewing copy."""
    args = [
        "stasnake",
        "prepare-view",
        map_path,
        view_path,
        "--lowpass-angstrom",
        f"{lowpass_angstrom:g}",
    ]
    args.append("--invert" if invert else "--no-invert")
    return shlex.join(args)


def missing_annotations(
    tilt_series: Sequence[str],
    config_like=None,
    annotations_dir="annotations",
    autopilot=None,
    proposals_dir="results/proposals",
    steps: Iterable[str] | None = None,
) -> list[MissingAnnotation]:
    """Every annotation file the workflow needs and cannot get, in protocol order.

    Parameters
    ----------
    tilt_series : sequence of str
        Names of the tilt series in the sample list (dipoles are per tilt series).
    config_like : mapping, optional
        Workflow configuration; reads ``annotations.{dipole_binning, autopilot, maps,
        views, view_lowpass_angstrom}`` when present.
    annotations_dir : str or PathLike
        The user's annotations folder.
    autopilot : bool, mapping or iterable of str, optional
        See :func:`autopilot_enabled`; None takes ``annotations.autopilot`` (default off).
    proposals_dir : str or PathLike
        Where the autopilot writes its proposals.
    steps : iterable of str, optional
        Only these kinds (default: all three).

    Returns
    -------
    list of MissingAnnotation
        Empty when every needed file exists or is covered by the autopilot.
        Files are only checked for existence, never created or read.
    """
    kinds = list(ANNOTATION_STEPS) if steps is None else [_check_kind(k).kind for k in steps]
    binning = dipole_binning(config_like)
    missing = []
    for kind in kinds:
        step = ANNOTATION_STEPS[kind]
        for ts in list(tilt_series) if step.per_tilt_series else [None]:
            if annotation_source(kind, ts, config_like, annotations_dir, autopilot, proposals_dir):
                continue
            map_path, view_path, lowpass = _map_paths(step, ts, config_like)
            missing.append(
                MissingAnnotation(
                    kind=kind,
                    tilt_series=ts,
                    path=str(annotation_path(kind, ts, annotations_dir, config_like)),
                    step=step,
                    map_path=map_path,
                    view_path=view_path,
                    map_ready=Path(map_path).is_file(),
                    prepare_command=prepare_command(map_path, view_path, lowpass, step.view_invert),
                    lowpass_angstrom=lowpass,
                    binning=binning,
                )
            )
    return missing


def annotated_tilt_series(
    tilt_series: Sequence[str], config_like=None, annotations_dir="annotations", autopilot=None
) -> list[str]:
    """The tilt series whose dipoles are available (user file, or the autopilot is on)."""
    return [
        ts
        for ts in tilt_series
        if annotation_source("dipoles", ts, config_like, annotations_dir, autopilot) is not None
    ]


def _wrap(label: str, text: str, width: int = 100) -> str:
    indent = " " * 12
    return textwrap.fill(
        text, width=width, initial_indent=f"   {label:<9}", subsequent_indent=indent,
        break_long_words=False, break_on_hyphens=False,
    )  # fmt: skip


def format_missing_message(
    missing: Sequence[MissingAnnotation], config_file: str = "config/config.yaml"
) -> str:
    """One message listing every missing annotation file and how to make it.

    Each entry gives the exact path, what to mark (the protocol's guidance),
    the map to open, the command that prepares its viewing copy and the file
    format. Returns "" when nothing is missing.
    """
    if not missing:
        return ""
    n = len(missing)
    lines = [
        f"{n} annotation file{'s are' if n != 1 else ' is'} missing; the workflow stops before "
        f"the step{'s' if n != 1 else ''} that need{'' if n != 1 else 's'} "
        f"{'them' if n != 1 else 'it'}.",
        "Create each file below (the workflow never writes into the annotations folder), then rerun",
        "the same snakemake command: it continues from there.",
        "",
    ]
    for i, m in enumerate(missing, start=1):
        step = m.step
        where = f", tilt series {m.tilt_series}" if m.tilt_series else ""
        lines.append(f"{i}. {m.path}")
        lines.append(_wrap("what:", f"{step.title}{where} (protocol {step.protocol_step})"))
        lines.append(_wrap("mark:", step.what_to_mark[0].upper() + step.what_to_mark[1:]))
        description = _fill(step.map_description, m.tilt_series, m.binning)
        if m.map_ready:
            open_text = f"{m.view_path} (made from {m.map_path}, {description})"
        else:
            later = (
                "this run makes it"
                if m.step.per_tilt_series
                else "the workflow makes it once the files listed before it are in place"
            )
            open_text = (
                f"{m.view_path}, made from {m.map_path} ({description}), which does not exist yet: "
                + later
            )
        lines.append(_wrap("open:", open_text))
        lines.append(f"   {'prepare:':<9}{m.prepare_command}")  # one line, to copy and paste
        lines.append(_wrap("format:", step.file_format.format(binning=m.binning)))
        lines.append("")
    kinds = sorted({m.kind for m in missing}, key=list(ANNOTATION_STEPS).index)
    lines.append(
        textwrap.fill(
            "Or let the workflow propose them: set annotations: autopilot: true (or "
            f"autopilot: {{{', '.join(f'{k}: true' for k in kinds)}}}) in {config_file}; "
            "proposals go to results/proposals/ and are used only where no annotation file exists.",
            width=100,
        )
    )
    return "\n".join(lines)


def _lowpass_transmission(shape_zyx, pixel_size: float, lowpass_angstrom: float) -> np.ndarray:
    """Soft low-pass on the rfftn grid: 1 below 0.85 fc, cosine to 0 at 1.15 fc, 0.5 at fc = 1/lowpass."""
    nz, ny, nx = shape_zyx
    fz = np.fft.fftfreq(nz, d=pixel_size)[:, None, None]
    fy = np.fft.fftfreq(ny, d=pixel_size)[None, :, None]
    fx = np.fft.rfftfreq(nx, d=pixel_size)[None, None, :]
    f = np.sqrt(fz * fz + fy * fy + fx * fx)
    fc = 1.0 / lowpass_angstrom
    lo, hi = 0.85 * fc, 1.15 * fc
    t = np.clip((f - lo) / (hi - lo), 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * t))).astype(np.float32)


def prepare_view(
    volume: np.ndarray,
    pixel_size: float,
    lowpass_angstrom: float,
    invert: bool = True,
    workers: int | None = None,
) -> np.ndarray:
    """A viewing copy of a map: low-pass filtered, normalised and (optionally) contrast-inverted.

    As the protocol's ``prepare_average_for_chimera`` (``dynamo_bandpass`` then
    inversion): cryo-ET maps have dark protein; inverted, protein is bright and
    ChimeraX isosurfaces enclose it.

    Parameters
    ----------
    volume : np.ndarray
        (z, y, x) map.
    pixel_size : float
        Pixel size in Å (> 0).
    lowpass_angstrom : float
        Resolution of the low-pass in Å: transmission 0.5 at 1 / lowpass_angstrom,
        1 below 0.85 of it, 0 above 1.15 of it (raised cosine). Values finer than
        Nyquist (``2 * pixel_size``) only normalise.
    invert : bool
        Multiply by -1 after filtering.
    workers : int, optional
        Threads for scipy.fft (default: all CPUs).

    Returns
    -------
    np.ndarray
        float32 (z, y, x), mean 0 and standard deviation 1 (0 everywhere for a
        constant input), inverted when ``invert``.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3-D (z, y, x), got shape {volume.shape}")
    if not pixel_size > 0:
        raise ValueError(f"pixel_size must be positive, got {pixel_size}")
    if not lowpass_angstrom > 0:
        raise ValueError(f"lowpass_angstrom must be positive, got {lowpass_angstrom}")
    workers = workers or os.cpu_count() or 1
    data = volume.astype(np.float32, copy=False)
    if lowpass_angstrom > 2.0 * pixel_size:
        spectrum = scipy.fft.rfftn(data, workers=workers)
        spectrum *= _lowpass_transmission(data.shape, pixel_size, lowpass_angstrom)
        data = scipy.fft.irfftn(spectrum, s=data.shape, workers=workers).astype(np.float32)
    out = data - np.float32(data.mean(dtype=np.float64))
    std = float(out.std(dtype=np.float64))
    if std > 0:
        out /= np.float32(std)
    else:
        out[...] = 0.0
    if invert:
        np.negative(out, out=out)
    return out
