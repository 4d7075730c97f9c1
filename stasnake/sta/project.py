"""Alignment projects: Dynamo's rounds of iterations, read from YAML and validated before work starts.

Specification: ``docs/alignment-projects.md``. A project is a list of *rounds*;
each round runs ``iterations`` iterations with the same numerical parameters
(Dynamo's ``_r1`` ... ``_r8`` parameter sets). Iteration ``k`` (1-based over the
whole project) aligns every particle of the table of iteration ``k - 1`` against
the average of iteration ``k - 1`` (symmetrised with the round's ``sym``), then
averages the particles that pass the round's CC threshold. Iteration 0 holds the
starting table and the starting reference.

Units: angles in degrees; shifts, shift limits and ``separation_in_tomogram`` in
pixels of the full-size (cropped) particles; ``low`` and ``high`` in Fourier
pixels of the full-size box (``dim`` does not change them, see the spec).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd

from stasnake.errors import InputError
from stasnake.sta.angles import AngularScan
from stasnake.sta.poses import symmetry_order
from stasnake.sta.tables import half_set

#: Threshold modes (Dynamo ``threshold_modus``); ``m * 10 + 1`` also excludes from the next alignment.
THRESHOLD_MODES = (0, 1, 2, 3, 4, 5, 11, 21, 31, 41, 51)
#: Shift-limit origins (Dynamo ``area_search_modus``).
AREA_SEARCH_MODES = (0, 1, 2, 3, 4)
#: A round's alignment mask: the project's (None), none, or the lattice layer of the reference.
ROUND_MASKS = (None, "none", "lattice")
#: Particle sets a project can read: the first crop (``results/particles/{ts}/``) and the
#: protocol's re-crops (``results/protocol/{set}/{ts}/``, docs/protocol.md).
PARTICLE_SETS = ("cropped", "subboxed", "cleaned", "selected")


@dataclass(frozen=True)
class Round:
    """The numerical parameters of one round (Dynamo names; see the module docstring for units).

    ``mask`` is ours (Dynamo has one alignment mask per project): None uses the project's,
    ``"none"`` aligns this round with the whole map, ``"lattice"`` with a mask on the lattice
    layer beside the membrane, made from each iteration's reference
    (:func:`stasnake.sta.masks.lattice_layer_mask`; protocol steps 3 and 4).
    ``area_search_frame`` is ours too: ``box`` (Dynamo's) takes ``area_search`` on the
    tomogram axes, ``particle`` on each particle's axes (z = its surface normal).
    ``ctf_scores`` (ours): score the reference times each particle's CTF and exposure transfer
    (:func:`stasnake.sta.align.align_particles` ``transfers``) instead of the binary wedge.
    """

    iterations: int = 1
    cone_range: float = 360.0
    cone_sampling: float = 30.0
    inplane_range: float = 360.0
    inplane_sampling: float = 30.0
    refine: int = 0
    refine_factor: float = 2.0
    cone_flip: int = 0
    inplane_flip: int = 0
    area_search: tuple[float, float, float] = (4.0, 4.0, 4.0)
    area_search_modus: int = 1
    low: float | None = None
    high: float = 2.0
    dim: int | None = None
    sym: str = "c1"
    threshold_modus: int = 0
    threshold: float = 0.0
    separation_in_tomogram: float = 0.0
    mask: str | None = None
    area_search_frame: str = "box"
    ctf_scores: bool = False

    @property
    def symmetry_order(self) -> int:
        return symmetry_order(self.sym)

    @property
    def final_sampling_deg(self) -> float:
        """Angular step of the last refinement level: ``cone_sampling / 2**refine``."""
        return self.cone_sampling / 2**self.refine

    def search_params(self):
        """This round's :class:`stasnake.sta.align.SearchParams`."""
        from stasnake.sta.align import SearchParams

        return SearchParams(
            cone_range=self.cone_range, cone_sampling=self.cone_sampling,
            inplane_range=self.inplane_range, inplane_sampling=self.inplane_sampling,
            refine=self.refine, refine_factor=self.refine_factor, low=self.low, high=self.high,
            dim=self.dim, symmetry_order=self.symmetry_order, cone_flip=self.cone_flip,
            inplane_flip=self.inplane_flip,
            shift_limits_xyz=None if self.area_search_modus == 0 else tuple(self.area_search),
            shift_frame=self.area_search_frame,
        )  # fmt: skip


@dataclass(frozen=True)
class Project:
    """An alignment project: its particles, references, masks and rounds.

    Attributes
    ----------
    name : str
        Project name (``results/sta/{name}/``).
    tomograms : tuple of str
        Tilt series whose cropped particles enter the project.
    rounds : tuple of Round
    reference : str
        ``"average"``: the starting reference is the wedge-compensated average of
        the starting table; ``"project:NAME"``: the last average of project NAME
        (of ``NAME_{ts}`` when NAME is per tomogram and this project is too);
        otherwise the path of an MRC map of the particles' box.
    randomize_azimuth : bool
        Randomise each particle's rotation about its own z axis in the starting
        table (the protocol's azimuth-randomised template; no in-plane bias).
    mask, classification_mask : str or None
        MRC masks in the reference frame (box of the particles): the alignment
        mask multiplies the rotated reference; the classification mask gives the
        CC written in column ``cc2``. None: a soft sphere of radius ``box / 2 - 2``
        for alignment, no classification CC.
    gold_standard : bool
        Even and odd tags (halves 1 and 2) are aligned against their own half's
        reference and averaged separately; the FSC between the halves is
        written every iteration.
    chunk_size : int
        Particles per alignment or averaging job.
    starting_symmetry : str
        Symmetry of the starting average (``c1`` for a template with no bias).
    per_tomogram : bool
        In the configuration: one project ``NAME_{ts}`` per tilt series of
        ``tomograms`` (the protocol's per-tomogram projects); ``tomograms`` of
        each expanded project is that one tilt series.
    particles : str
        The particle set (:data:`PARTICLE_SETS`): ``cropped``, the first crop, or one of
        the protocol's re-crops.
    recentre_marker : str or None
        A ChimeraX marker file (one marker, Å, in the frame of the reference map): the
        starting table is re-centred on it (:func:`stasnake.sta.table_ops.recentre`), as
        the protocol moves every tomogram's crop points onto the unit marked in the
        initial reference (step 3B) before the per-tomogram projects.
    """

    name: str
    tomograms: tuple[str, ...]
    rounds: tuple[Round, ...]
    reference: str = "average"
    randomize_azimuth: bool = False
    mask: str | None = None
    classification_mask: str | None = None
    gold_standard: bool = False
    chunk_size: int = 100
    starting_symmetry: str = "c1"
    per_tomogram: bool = False
    particles: str = "cropped"
    recentre_marker: str | None = None
    where: str = field(default="", compare=False, repr=False)

    @property
    def n_iterations(self) -> int:
        return sum(r.iterations for r in self.rounds)

    def round_index(self, iteration: int) -> int:
        """0-based round of iteration ``iteration`` (1 .. n_iterations)."""
        if not 1 <= iteration <= self.n_iterations:
            raise ValueError(f"project {self.name} has iterations 1..{self.n_iterations}, not {iteration}")
        ends = np.cumsum([r.iterations for r in self.rounds])
        return int(np.searchsorted(ends, iteration))

    def round_of(self, iteration: int) -> Round:
        return self.rounds[self.round_index(iteration)]

    def round_start(self, iteration: int) -> int:
        """The first iteration of the round that contains ``iteration``."""
        i = self.round_index(iteration)
        return 1 + sum(r.iterations for r in self.rounds[:i])

    def shift_origin_iteration(self, iteration: int) -> int | None:
        """Iteration whose table holds the centre of the shift limits of ``iteration``.

        Mode 0: None (unlimited); 1: None (the box centre); 2: the previous
        iteration; 3: the iteration before the round's first; 4: iteration 0.
        """
        mode = self.round_of(iteration).area_search_modus
        if mode in (0, 1):
            return None
        if mode == 2:
            return iteration - 1
        if mode == 3:
            return self.round_start(iteration) - 1
        return 0

    @property
    def halves(self) -> tuple[str, ...]:
        return ("half1", "half2") if self.gold_standard else ("all",)


_PROJECT_KEYS = {f.name for f in fields(Project)} - {"name", "where"}
_ROUND_KEYS = {f.name for f in fields(Round)}


def _number(where: str, key: str, value, minimum=None, exclusive=False, integer=False, allow_none=False):
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and math.isfinite(float(value)) and (not integer or float(value).is_integer())
    if ok and minimum is not None:
        ok = float(value) > minimum if exclusive else float(value) >= minimum
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = "" if minimum is None else f" {'>' if exclusive else '>='} {minimum}"
        raise InputError(f"{where}{key}", f"must be {kind}{bound}, not {value!r}")
    return int(value) if integer else float(value)


def load_round(spec, where: str) -> Round:
    """One round mapping validated (``where`` prefixes the keys in messages)."""
    if not isinstance(spec, dict):
        raise InputError(where.rstrip("."), f"a round must be a mapping of parameters, not {spec!r}")
    unknown = sorted(set(spec) - _ROUND_KEYS)
    if unknown:
        raise InputError(f"{where}{unknown[0]}", f"unknown round parameter; known: {', '.join(sorted(_ROUND_KEYS))}")
    v = {**{f.name: f.default for f in fields(Round)}, **spec}
    out = dict(
        iterations=_number(where, "iterations", v["iterations"], 1, integer=True),
        cone_range=_number(where, "cone_range", v["cone_range"], 0),
        cone_sampling=_number(where, "cone_sampling", v["cone_sampling"], 0, exclusive=True),
        inplane_range=_number(where, "inplane_range", v["inplane_range"], 0),
        inplane_sampling=_number(where, "inplane_sampling", v["inplane_sampling"], 0, exclusive=True),
        refine=_number(where, "refine", v["refine"], 0, integer=True),
        refine_factor=_number(where, "refine_factor", v["refine_factor"], 0, exclusive=True),
        cone_flip=_number(where, "cone_flip", v["cone_flip"], 0, integer=True),
        inplane_flip=_number(where, "inplane_flip", v["inplane_flip"], 0, integer=True),
        area_search_modus=_number(where, "area_search_modus", v["area_search_modus"], 0, integer=True),
        low=_number(where, "low", v["low"], 0, exclusive=True, allow_none=True),
        high=_number(where, "high", v["high"], 0),
        dim=_number(where, "dim", v["dim"], 1, integer=True, allow_none=True),
        threshold_modus=_number(where, "threshold_modus", v["threshold_modus"], 0, integer=True),
        threshold=_number(where, "threshold", v["threshold"]),
        separation_in_tomogram=_number(where, "separation_in_tomogram", v["separation_in_tomogram"], 0),
    )
    limits = v["area_search"]
    limits = [limits] * 3 if np.ndim(limits) == 0 else list(limits)
    if len(limits) != 3:
        raise InputError(f"{where}area_search", f"must be one number or three (x, y, z), not {v['area_search']!r}")
    out["area_search"] = tuple(_number(where, "area_search", a, 0) for a in limits)
    if out["area_search_modus"] not in AREA_SEARCH_MODES:
        raise InputError(f"{where}area_search_modus", f"must be one of {AREA_SEARCH_MODES}, not {v['area_search_modus']}")
    if out["threshold_modus"] not in THRESHOLD_MODES:
        raise InputError(f"{where}threshold_modus", f"must be one of {THRESHOLD_MODES}, not {v['threshold_modus']}")
    if out["threshold_modus"] % 10 == 5 and not 0 < out["threshold"] <= 1:
        raise InputError(f"{where}threshold", f"threshold_modus 5 keeps a fraction: 0 < threshold <= 1, not {out['threshold']}")
    if out["threshold_modus"] % 10 == 4 and (out["threshold"] < 1 or not float(out["threshold"]).is_integer()):
        raise InputError(f"{where}threshold", f"threshold_modus 4 keeps the best N: a whole number >= 1, not {out['threshold']}")
    if v["mask"] not in ROUND_MASKS:
        raise InputError(f"{where}mask", f"must be one of {', '.join(map(str, ROUND_MASKS))}, not {v['mask']!r}")
    out["mask"] = v["mask"]
    if v["area_search_frame"] not in ("box", "particle"):
        raise InputError(f"{where}area_search_frame", f"must be box or particle, not {v['area_search_frame']!r}")
    out["area_search_frame"] = v["area_search_frame"]
    if not isinstance(v["ctf_scores"], bool):
        raise InputError(f"{where}ctf_scores", f"must be true or false, not {v['ctf_scores']!r}")
    out["ctf_scores"] = v["ctf_scores"]
    if out["low"] is not None and out["low"] <= out["high"]:
        raise InputError(f"{where}low", f"low-pass cutoff {out['low']} must exceed the high-pass cutoff high = {out['high']}")
    try:
        sym = str(v["sym"])
        symmetry_order(sym)
    except ValueError as exc:
        raise InputError(f"{where}sym", str(exc)) from None
    # the angular parameters are checked once more by the scan itself (ranges, flips)
    AngularScan(out["cone_range"], out["cone_sampling"], out["inplane_range"], out["inplane_sampling"],
                symmetry_order(sym), out["cone_flip"], out["inplane_flip"], where=where)  # fmt: skip
    return Round(sym=sym, **out)


def load_project(name: str, spec: dict, box_size: int, tomograms, where: str | None = None) -> Project:
    """Validate one project's YAML mapping.

    Parameters
    ----------
    name : str
        Project name (letters, digits, ``_`` and ``-``).
    spec : dict
        The project's mapping (keys of :class:`Project` and ``rounds``, a list of
        mappings with the keys of :class:`Round`).
    box_size : int or dict
        Side of the cropped particles, pixels: ``dim`` must not exceed it; a dict gives the
        box of each particle set (:data:`PARTICLE_SETS`).
    tomograms : iterable of str
        Tilt series known to the workflow (``tomograms: all`` takes them all).
    where : str, optional
        Prefix naming the configuration source in messages.

    Returns
    -------
    Project

    Raises
    ------
    InputError
        Naming the key (``config: sta_projects.NAME.rounds[2].cone_sampling``) for an
        unknown key or an impossible value.
    """
    where = where or f"config: sta_projects.{name}."
    known = list(tomograms)
    if not isinstance(name, str) or not name or not all(ch.isalnum() or ch in "_-" for ch in name):
        raise InputError(where.rstrip("."), f"project name {name!r} must be letters, digits, '_' or '-'")
    if not isinstance(spec, dict):
        raise InputError(where.rstrip("."), f"a project must be a mapping, not {spec!r}")
    unknown = sorted(set(spec) - _PROJECT_KEYS)
    if unknown:
        raise InputError(f"{where}{unknown[0]}", f"unknown project key; known: {', '.join(sorted(_PROJECT_KEYS))}")
    rounds_spec = spec.get("rounds")
    if not isinstance(rounds_spec, list) or not rounds_spec:
        raise InputError(f"{where}rounds", "must be a non-empty list of rounds")
    if len(rounds_spec) > 8:
        raise InputError(f"{where}rounds", f"Dynamo projects have at most 8 rounds, not {len(rounds_spec)}")
    rounds = tuple(load_round(r, f"{where}rounds[{i + 1}].") for i, r in enumerate(rounds_spec))
    particles = spec.get("particles", "cropped")
    if particles not in PARTICLE_SETS:
        raise InputError(f"{where}particles", f"{particles!r} is not a particle set; sets: {', '.join(PARTICLE_SETS)}")
    if isinstance(box_size, dict):
        box_size = box_size[particles]
    for i, r in enumerate(rounds):
        w = f"{where}rounds[{i + 1}]."
        dim = r.dim or box_size
        if dim > box_size:
            raise InputError(f"{w}dim", f"{dim} exceeds the particle box of {box_size} px")
        if dim < 8:
            raise InputError(f"{w}dim", f"{dim} px is too small to align (at least 8)")
        if r.low is not None and r.low > dim / 2:
            raise InputError(f"{w}low", f"{r.low} Fourier px lies beyond the Nyquist frequency ({dim / 2:g}) of dim {dim}")
        if r.area_search_modus and max(r.area_search) >= box_size / 2:
            raise InputError(f"{w}area_search", f"shift limits {list(r.area_search)} px reach the edge of the "
                             f"{box_size}-px box")  # fmt: skip
    toms = spec.get("tomograms", "all")
    toms = known if toms == "all" else toms
    if isinstance(toms, str):
        toms = [toms]
    missing = [t for t in toms if t not in known]
    if missing:
        raise InputError(f"{where}tomograms", f"{missing} not in the sample list ({known})")
    if not toms:
        raise InputError(f"{where}tomograms", "no tomograms")
    chunk = _number(where, "chunk_size", spec.get("chunk_size", 100), 1, integer=True)
    reference = str(spec.get("reference", "average"))
    for key in ("mask", "classification_mask", "recentre_marker"):
        value = spec.get(key)
        if value is not None and not isinstance(value, str):
            raise InputError(f"{where}{key}", f"must be the path of a file, not {value!r}")
    for key in ("randomize_azimuth", "gold_standard", "per_tomogram"):
        if not isinstance(spec.get(key, False), bool):
            raise InputError(f"{where}{key}", f"must be true or false, not {spec[key]!r}")
    start_sym = str(spec.get("starting_symmetry", "c1"))
    try:
        symmetry_order(start_sym)
    except ValueError as exc:
        raise InputError(f"{where}starting_symmetry", str(exc)) from None
    return Project(
        name=name, tomograms=tuple(toms), rounds=rounds, reference=reference,
        randomize_azimuth=bool(spec.get("randomize_azimuth", False)), mask=spec.get("mask"),
        classification_mask=spec.get("classification_mask"), gold_standard=bool(spec.get("gold_standard", False)),
        chunk_size=chunk, starting_symmetry=start_sym, per_tomogram=bool(spec.get("per_tomogram", False)),
        particles=particles, recentre_marker=spec.get("recentre_marker"), where=where,
    )  # fmt: skip


def load_projects(config_projects: dict | None, box_size: int | dict, tomograms) -> dict[str, Project]:
    """All projects of the configuration's ``sta_projects`` mapping (a value may be a YAML file path).

    A project with ``per_tomogram: true`` becomes one project ``NAME_{ts}`` per tilt
    series. References ``project:NAME`` must name another configured project, and the
    chain of references must not loop.
    """
    import yaml

    out = {}
    for name, spec in (config_projects or {}).items():
        where = None
        if isinstance(spec, str):
            path = Path(spec)
            if not path.is_file():
                raise InputError(f"config: sta_projects.{name}", f"project file {spec} does not exist")
            spec = yaml.safe_load(path.read_text())
            where = f"{path}: "
        project = load_project(name, spec, box_size, tomograms, where)
        if not project.per_tomogram:
            out[name] = project
            continue
        for ts in project.tomograms:
            out[f"{name}_{ts}"] = replace(project, name=f"{name}_{ts}", tomograms=(ts,))
    for project in out.values():
        _check_reference_chain(project, out)
    return out


def referenced_project(project: Project, projects: dict[str, Project]) -> str | None:
    """Name of the project whose last average is ``project``'s starting reference, if any."""
    if not project.reference.startswith("project:"):
        return None
    source = project.reference.split(":", 1)[1]
    if project.per_tomogram and len(project.tomograms) == 1 and f"{source}_{project.tomograms[0]}" in projects:
        return f"{source}_{project.tomograms[0]}"
    return source


def _check_reference_chain(project: Project, projects: dict[str, Project]) -> None:
    seen = [project.name]
    current = project
    while (source := referenced_project(current, projects)) is not None:
        if source not in projects:
            raise InputError(f"{project.where}reference", f"{current.reference!r}: no project {source!r} "
                             f"(projects: {', '.join(sorted(projects))})")  # fmt: skip
        if source in seen:
            raise InputError(f"{project.where}reference", f"projects reference each other in a loop: "
                             f"{' -> '.join([*seen, source])}")  # fmt: skip
        seen.append(source)
        current = projects[source]


def check_mask(mask: np.ndarray, box_size: int, source) -> None:
    """A mask must be a (box, box, box) array with values in [0, 1] and some support."""
    if mask.shape != (box_size,) * 3:
        raise InputError(source, f"mask of shape {mask.shape} for particles of box {box_size} (needs {(box_size,) * 3})")
    if not np.isfinite(mask).all() or mask.min() < -1e-3 or mask.max() > 1 + 1e-3:
        raise InputError(source, f"mask values must lie in [0, 1], found [{mask.min():g}, {mask.max():g}]")
    if mask.sum() < 1:
        raise InputError(source, "mask is empty")


def select_for_average(cc: np.ndarray, modus: int, threshold: float, candidates: np.ndarray | None = None) -> np.ndarray:
    """Which particles enter the average (Dynamo ``threshold_modus``).

    Parameters
    ----------
    cc : np.ndarray
        (n,) cross-correlation of each particle after alignment.
    modus : int
        0 all; 1 ``cc > threshold``; 2 ``cc > mean * threshold``; 3 ``cc > mean +
        threshold * std``; 4 the ``threshold`` best; 5 the best fraction
        ``threshold``. ``10 m + 1`` selects like ``m`` (the caller also excludes the
        rest from the next alignment).
    threshold : float
        The mode's threshold value T.
    candidates : np.ndarray, optional
        (n,) bool, particles eligible at all (e.g. still aligned); statistics use only them.

    Returns
    -------
    np.ndarray
        (n,) bool.
    """
    cc = np.asarray(cc, dtype=np.float64)
    ok = np.ones(cc.size, bool) if candidates is None else np.asarray(candidates, bool).copy()
    m = modus // 10 if modus > 5 else modus
    vals = cc[ok]
    if m == 0 or vals.size == 0:
        return ok
    if m == 1:
        return ok & (cc > threshold)
    if m == 2:
        return ok & (cc > vals.mean() * threshold)
    if m == 3:
        return ok & (cc > vals.mean() + threshold * vals.std())
    keep = int(threshold) if m == 4 else int(math.ceil(threshold * vals.size))
    order = np.flatnonzero(ok)[np.argsort(-vals, kind="stable")][:keep]
    out = np.zeros(cc.size, bool)
    out[order] = True
    return out


def chunk_count(n_particles: int, chunk_size: int) -> int:
    """Number of chunks of at most ``chunk_size`` particles (at least 1)."""
    return max(1, -(-int(n_particles) // int(chunk_size)))


def chunk_labels(table: pd.DataFrame, project: Project, split_halves: bool = False) -> list[tuple[str, int]]:
    """The (half, chunk) pairs that split a project's table into jobs.

    Halves are ``"half1"`` and ``"half2"`` (even and odd tags,
    :func:`stasnake.sta.tables.half_set`) in gold-standard projects or with
    ``split_halves`` (averaging jobs, which keep the half sums apart for the FSC),
    else ``"all"``.
    """
    halves = half_set(table["tag"].to_numpy())
    labels = []
    for h in ("half1", "half2") if split_halves else project.halves:
        n = len(table) if h == "all" else int(np.sum(halves == int(h[-1])))
        labels += [(h, c) for c in range(chunk_count(n, project.chunk_size))]
    return labels


def chunk_rows(table: pd.DataFrame, half: str, chunk: int, chunk_size: int) -> np.ndarray:
    """0-based rows of the project table in chunk ``chunk`` of ``half`` ("all", "half1", "half2")."""
    if half == "all":
        rows = np.arange(len(table))
    else:
        rows = np.flatnonzero(half_set(table["tag"].to_numpy()) == int(half[-1]))
    return rows[chunk * chunk_size:(chunk + 1) * chunk_size]


def particle_index(tables: dict[str, pd.DataFrame], stacks: dict[str, str]) -> pd.DataFrame:
    """Where each row of the merged project table lives: tilt series, stack file and box number.

    Parameters
    ----------
    tables : dict
        Cropped-particle table of each tilt series (rows = boxes of its stack, in order).
    stacks : dict
        Particle stack path of each tilt series.

    Returns
    -------
    pd.DataFrame
        Columns ``row``, ``ts``, ``stack``, ``box`` (0-based box in the stack),
        ``tag`` (provisional ``1..n``; the start job replaces it by the tag of
        :func:`stasnake.sta.table_ops.merge_tables`) and ``source_tag`` (the
        particle's tag in its tilt series' table).
    """
    parts = []
    for ts, table in tables.items():
        parts.append(pd.DataFrame({"ts": ts, "stack": str(stacks[ts]), "box": np.arange(len(table)),
                                   "source_tag": table["tag"].to_numpy()}))  # fmt: skip
    index = pd.concat(parts, ignore_index=True)
    index.insert(0, "row", np.arange(len(index)))
    index.insert(4, "tag", np.arange(1, len(index) + 1))
    return index


class ParticleStacks:
    """Lazy, read-only access to the boxes of a project's rows (memory-mapped stacks).

    ``ParticleStacks(index, rows)[i]`` is the (b, b, b) box of project row
    ``rows[i]``; only the boxes that are indexed are read.
    """

    def __init__(self, index: pd.DataFrame, rows):
        self._index = index.set_index("row", drop=False)
        self._rows = np.asarray(rows, dtype=np.int64)
        self._stacks: dict[str, np.ndarray] = {}

    def _stack(self, path: str) -> np.ndarray:
        if path not in self._stacks:
            from stasnake.io.particle_export import read_particle_stack

            self._stacks[path] = read_particle_stack(path)[0]
        return self._stacks[path]

    def __len__(self) -> int:
        return self._rows.size

    def __getitem__(self, i: int) -> np.ndarray:
        entry = self._index.loc[int(self._rows[i])]
        # the memmap view itself: averaging releases the pages it has read
        return self._stack(entry["stack"])[int(entry["box"])]
