"""The alignment projects of the Dynamo HIV-1 VLP protocol, with defaults scaled to the data.

Scaramuzza & Castaño-Díez (2021) ran every project on EMPIAR-10164 at 1.35 Å per pixel with
boxes of 256 px (steps 2-4) and 192 px (after subboxing, steps 5-9). Their parameters are
stated in Å here (or in binned pixel sizes) and converted to the pixels of the data at hand:

* ``dim`` (on-the-fly binning): the protocol bins 256-px boxes twice (5.4 Å per binned pixel)
  then once (2.7 Å); a round's ``dim`` is the box binned to that binned pixel size, or
  unbinned when the data are coarser already;
* ``low`` (Fourier pixels of the box): the protocol's low-pass in Å (15 Å for picking, 8.1 Å
  and 6.8 Å for the gold standard), limited to just under the binned Nyquist;
* shift limits: the protocol's in Å (relative to the 75 Å lattice spacing of the CA-SP1
  hexamers, so that a crop point can slide onto the nearest unit), limited to the box;
* angles, iterations, rounds and symmetry are the protocol's.

The projects, in protocol order (``docs/protocol.md``):

``protocol_reference``        step 3A: one tomogram, azimuth randomised, 2 rounds x 3
                              iterations, no symmetry (box of the first crop)
``protocol_tomogram_{ts}``    step 4: every tomogram against the centred initial reference, C6
``protocol_subboxed_{ts}``    step 5F: the subboxed particles (second box), reduced search
``protocol_gold``             step 7: all tomograms merged, even/odd halves independent,
                              3 rounds x 3 iterations, the last two unbinned
``protocol_refined``          step 8B: after the latitude CC filter, the last round again with
                              a stricter low-pass and the tight mask

One deviation: the picking projects (steps 3 and 4, after the first round of step 3), the
subboxed project (step 5F) and the gold-standard project (step 7) align on the lattice layer
beside the membrane only (round ``mask: lattice``,
:func:`stasnake.sta.masks.lattice_layer_mask` of the current reference); see
:func:`picking_rounds`, :func:`subboxed_rounds` and :func:`gold_rounds`. A round's
``mask: null`` (e.g. ``projects.subboxed.rounds: [{mask: null}]``) undoes it.

``average_of_averages`` (step 5A) aligns the per-tomogram averages as particles with the
parameters :func:`average_of_averages_round` gives. Every value can be overridden in the
configuration (``protocol.projects.STAGE``): project keys replace the default; ``rounds`` is
merged round by round (a mapping per round updates that round's parameters).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

from stasnake.errors import InputError
from stasnake.sta.project import Project, load_project

#: The protocol's pixel size (EMPIAR-10164, Å) and boxes (pixels).
PROTOCOL_PIXEL_SIZE = 1.35
PROTOCOL_CROP_BOX = 256
PROTOCOL_SUBBOX = 192
#: Lattice spacing of the immature CA-SP1 hexamers, Å.
HIV_LATTICE_SPACING_ANGSTROM = 75.0
#: Binned pixel sizes of the protocol's on-the-fly binning (256 px binned 2x, then 1x).
BINNED_TWICE_ANGSTROM = 4 * PROTOCOL_PIXEL_SIZE
BINNED_ONCE_ANGSTROM = 2 * PROTOCOL_PIXEL_SIZE
#: Low-pass filters, Å: 23 Fourier px at 256 x 1.35 Å; 32 and 38 px at 192 x 1.35 Å.
LOWPASS_PICKING_ANGSTROM = 15.0
LOWPASS_GOLD_ANGSTROM = 8.1
LOWPASS_REFINED_ANGSTROM = 6.8

#: Stage keys of ``protocol.projects`` and the project names they make.
STAGES = {
    "reference": "protocol_reference",
    "tomogram": "protocol_tomogram",
    "subboxed": "protocol_subboxed",
    "gold": "protocol_gold",
    "refined": "protocol_refined",
}
#: Particle set of each stage's project (see :data:`stasnake.sta.project.PARTICLE_SETS`).
STAGE_PARTICLES = {
    "reference": "cropped",
    "tomogram": "cropped",
    "subboxed": "subboxed",
    "gold": "cleaned",
    "refined": "selected",
}


def default_subbox(box_size: int) -> int:
    """The box after subboxing: the protocol's 192/256 of the first box, even, at least 16."""
    return max(16, 2 * round(0.75 * box_size / 2))


def binned_dim(box: int, pixel_size: float, binned_pixel_angstrom: float) -> int | None:
    """``dim`` that bins ``box`` to about ``binned_pixel_angstrom`` per pixel; None: no binning."""
    dim = 2 * math.floor(box * pixel_size / binned_pixel_angstrom / 2)
    return None if dim >= box else max(16, dim)


def lowpass_px(lowpass_angstrom: float, box: int, pixel_size: float, dim: int | None) -> float:
    """Low-pass in Fourier pixels of ``box``, kept 1.5 px under the Nyquist of ``dim`` (or box)."""
    nyquist = (dim or box) / 2
    return round(min(box * pixel_size / lowpass_angstrom, nyquist - 1.5), 1)


def shift_px(angstrom: float, box: int, pixel_size: float) -> float:
    """A shift limit in pixels, at least 1 and short of the box edge."""
    return round(min(max(1.0, angstrom / pixel_size), box / 2 - 2), 1)


def _round(iterations, cone, cone_step, inplane, inplane_step, shift, modus, dim, low, sym,
           refine=1, **extra) -> dict:  # fmt: skip
    return dict(
        iterations=iterations, cone_range=cone, cone_sampling=cone_step, inplane_range=inplane,
        inplane_sampling=inplane_step, refine=refine, refine_factor=2, area_search=shift,
        area_search_modus=modus, area_search_frame="particle", dim=dim, low=low, high=1, sym=sym,
        **extra,
    )  # fmt: skip


def picking_rounds(box: int, pixel_size: float, sym: str, spacing_angstrom: float,
                   recentred: bool = False) -> list[dict]:  # fmt: skip
    """Steps 3 and 4: two rounds of three iterations, binned twice then once, low-pass 15 Å.

    Step 3 (the first crop, not yet on the lattice): round 1 searches a cone of 30° and the
    in-plane period of the lattice (±30°, 10° steps) with the whole map (membrane included) and
    shifts mostly along the normal (0.6 lattice spacings in z, 0.1 in x, y): the membrane, the
    strongest feature, fixes each particle's height and normal, which the clicked spheres only
    approximate. Round 2 aligns on the lattice layer alone (round ``mask: lattice``) with 5°
    steps, the whole in-plane period and shifts of up to 0.6 spacings in x, y around the last
    position (``area_search_modus`` 2, as the walkthrough notes) but 0.1 in z, so that the
    lattice of every particle locks onto the reference's.

    Step 4 (``recentred``: the crop points moved onto the unit marked in the centred initial
    reference, whose lattice is already sharp): both rounds align on the lattice layer; round
    1 lets each particle reach the nearest unit (0.6 spacings in x, y, 0.3 in z, around its
    re-centred start, ``area_search_modus`` 4), round 2 refines (0.25 and 0.1 spacings,
    ``area_search_modus`` 2).

    The protocol aligns with the whole map throughout; on our synthetic VLPs the featureless
    bilayer dominates the cross-correlation and the lattice never locks in plane that way
    (measured: no six-fold order after 11 iterations of step 3; 18 % of step-4 particles on a
    unit instead of 56 % with the lattice mask from the first iteration).
    """
    d1 = binned_dim(box, pixel_size, BINNED_TWICE_ANGSTROM)
    d2 = binned_dim(box, pixel_size, BINNED_ONCE_ANGSTROM)
    low1 = lowpass_px(LOWPASS_PICKING_ANGSTROM, box, pixel_size, d1)
    low2 = lowpass_px(LOWPASS_PICKING_ANGSTROM, box, pixel_size, d2)
    f = {x: shift_px(x * spacing_angstrom, box, pixel_size) for x in (0.1, 0.25, 0.3, 0.6)}
    if recentred:
        return [
            _round(3, 30, 10, 30, 10, [f[0.6], f[0.6], f[0.3]], 4, d1, low1, sym, mask="lattice"),
            _round(3, 10, 5, 30, 5, [f[0.25], f[0.25], f[0.1]], 2, d2, low2, sym, mask="lattice"),
        ]
    return [
        _round(3, 30, 10, 30, 10, [f[0.1], f[0.1], f[0.6]], 1, d1, low1, sym, mask="none"),
        _round(3, 10, 5, 30, 5, [f[0.6], f[0.6], f[0.1]], 2, d2, low2, sym, mask="lattice"),
    ]


def average_of_averages_round(box: int, pixel_size: float, spacing_angstrom: float) -> dict:
    """Step 5A: the per-tomogram averages aligned like the particles before them (C6).

    The second picking round, with the in-plane search over the whole C6 period and shifts up
    to half a lattice spacing: each tomogram's project converged to its own in-plane angle and
    unit, so the averages can differ by any rotation about z and by one lattice step.
    """
    spec = dict(picking_rounds(box, pixel_size, "c6", spacing_angstrom)[1])
    spec.update(inplane_range=30, inplane_sampling=5, area_search_modus=1, mask=None,
                area_search=shift_px(0.5 * spacing_angstrom, box, pixel_size))  # fmt: skip
    return spec


def search_params_of(round_spec: dict):
    """:class:`stasnake.sta.align.SearchParams` of one round mapping (validated like a project's)."""
    from stasnake.sta.project import load_round

    return load_round(round_spec, "round.").search_params()


def subboxed_rounds(box: int, pixel_size: float, spacing_angstrom: float) -> list[dict]:
    """Step 5F: the subboxed particles, reduced search (still binned once), C6, on the lattice layer.

    The CC of this project is what step 6A classifies. Aligned on the whole box, as the paper
    does, it is dominated by the leaflet of the membrane at the edge of the smaller box: on the
    demo, candidates in lattice gaps scored a median CC of 0.48 against 0.55 on a unit (AUC
    0.84). On the lattice layer alone (round ``mask: lattice``) they score 0.10 against 0.28
    (AUC 0.97), and the mixture of step 6A keeps recall 0.91 at precision 0.97.
    """
    d = binned_dim(box, pixel_size, BINNED_ONCE_ANGSTROM)
    return [_round(3, 10, 5, 10, 5, shift_px(0.15 * spacing_angstrom, box, pixel_size), 2, d,
                   lowpass_px(LOWPASS_PICKING_ANGSTROM, box, pixel_size, d), "c6", mask="lattice")]  # fmt: skip


def gold_rounds(box: int, pixel_size: float, spacing_angstrom: float) -> list[dict]:
    """Step 7: three rounds of three iterations, narrowing; low-pass 8.1 Å; the last two unbinned.

    Every round aligns on the lattice layer (``mask: lattice``), as step 5F: on the whole box the
    membrane leaflet at its edge pulled particles off their units (demo: precision of the final
    particles 0.957 with the whole box, 0.989 on the lattice layer; FSC against the truth 0.5
    at 17.5 and 17.3 Å).
    """
    d1 = binned_dim(box, pixel_size, BINNED_ONCE_ANGSTROM)
    s = [shift_px(f * spacing_angstrom, box, pixel_size) for f in (0.1, 0.06, 0.04)]
    # limits around each round's starting position (area_search_modus 3): with limits around
    # the last position (2) the demo's particles random-walked off their units, 0.62 -> 0.46 of
    # them within a quarter spacing over the first three iterations
    return [
        _round(3, 8, 4, 8, 4, s[0], 3, d1, lowpass_px(LOWPASS_GOLD_ANGSTROM, box, pixel_size, d1), "c6", mask="lattice"),
        _round(3, 4, 2, 4, 2, s[1], 3, None, lowpass_px(LOWPASS_GOLD_ANGSTROM, box, pixel_size, None), "c6", mask="lattice"),
        _round(3, 2, 1, 2, 1, s[2], 3, None, lowpass_px(LOWPASS_GOLD_ANGSTROM, box, pixel_size, None), "c6", mask="lattice"),
    ]  # fmt: skip


def refined_rounds(box: int, pixel_size: float, spacing_angstrom: float) -> list[dict]:
    """Step 8B: the last gold-standard round with the low-pass raised to 6.8 Å, on the tight mask."""
    last = gold_rounds(box, pixel_size, spacing_angstrom)[-1]
    # mask None: the project's tight mask (membrane and cylinder), as the paper
    return [{**last, "low": lowpass_px(LOWPASS_REFINED_ANGSTROM, box, pixel_size, None), "mask": None}]


def default_stage_specs(box: int, subbox: int, pixel_size: float, reference_tomogram: str,
                        spacing_angstrom: float = HIV_LATTICE_SPACING_ANGSTROM,
                        chunk_size: int = 500,
                        reference_marker: str = "annotations/reference_center.cmm") -> dict[str, dict]:  # fmt: skip
    """The protocol's project of every stage as a configuration mapping (see the module doc).

    Parameters
    ----------
    box, subbox : int
        Side of the first crop (steps 2-4) and of the subboxed particles (steps 5-9), pixels.
    pixel_size : float
        Pixel size of the tomograms, Å.
    reference_tomogram : str
        The tilt series of the initial reference (step 3).
    spacing_angstrom : float
        Lattice spacing of the units, Å.
    chunk_size : int
        Particles per alignment or averaging job.
    reference_marker : str
        The particle-centre marker of step 3B (the user's file or the autopilot's): the
        per-tomogram projects start from their crop points moved onto it.
    """
    common = {"chunk_size": chunk_size}
    return {
        "reference": {**common, "tomograms": [reference_tomogram], "reference": "average",
                      "randomize_azimuth": True,
                      "rounds": picking_rounds(box, pixel_size, "c1", spacing_angstrom)},
        "tomogram": {**common, "tomograms": "all", "per_tomogram": True, "randomize_azimuth": True,
                     "reference": "results/reference/initial_reference.mrc",
                     "recentre_marker": reference_marker,
                     "rounds": picking_rounds(box, pixel_size, "c6", spacing_angstrom, recentred=True)},
        "subboxed": {**common, "tomograms": "all", "per_tomogram": True, "reference": "average",
                     "starting_symmetry": "c6",
                     "rounds": subboxed_rounds(subbox, pixel_size, spacing_angstrom)},
        "gold": {**common, "tomograms": "all", "reference": "average", "gold_standard": True,
                 "starting_symmetry": "c6", "rounds": gold_rounds(subbox, pixel_size, spacing_angstrom)},
        "refined": {**common, "tomograms": "all", "reference": "average", "gold_standard": True,
                    "starting_symmetry": "c6", "mask": "results/protocol/tight_mask.mrc",
                    "rounds": refined_rounds(subbox, pixel_size, spacing_angstrom)},
    }  # fmt: skip


def merge_stage_spec(default: dict, override: Mapping | None, where: str) -> dict:
    """A stage's project mapping with the configuration's overrides applied.

    Project keys replace the default's; ``rounds`` is merged by position: the i-th override
    (a mapping) updates the i-th default round, and rounds past the default's count are taken
    as given. A shorter list drops the default's last rounds only with ``n_rounds``.
    """
    spec = copy.deepcopy(default)
    if not override:
        return spec
    if not isinstance(override, Mapping):
        raise InputError(where, f"must be a mapping of project keys, not {override!r}")
    for key, value in override.items():
        if key == "rounds":
            if not isinstance(value, Sequence) or isinstance(value, str):
                raise InputError(f"{where}.rounds", f"must be a list of round mappings, not {value!r}")
            rounds = spec["rounds"]
            for i, r in enumerate(value):
                if not isinstance(r, Mapping):
                    raise InputError(f"{where}.rounds[{i + 1}]", f"must be a mapping, not {r!r}")
                if i < len(rounds):
                    rounds[i] = {**rounds[i], **r}
                else:
                    rounds.append(dict(r))
        elif key == "n_rounds":
            if not isinstance(value, int) or not 1 <= value <= len(spec["rounds"]):
                raise InputError(f"{where}.n_rounds", f"must be 1..{len(spec['rounds'])}, not {value!r}")
            spec["_n_rounds"] = value
        else:
            spec[key] = value
    if "_n_rounds" in spec:
        spec["rounds"] = spec["rounds"][: spec.pop("_n_rounds")]
    return spec


def protocol_projects(protocol: Mapping, tomograms: Sequence[str], box: int, subbox: int,
                      pixel_size: float,
                      reference_marker: str = "annotations/reference_center.cmm") -> dict[str, Project]:  # fmt: skip
    """The validated projects of the protocol (per-tomogram stages expanded to ``NAME_{ts}``).

    Parameters
    ----------
    protocol : mapping
        The configuration's ``protocol`` section (``reference_tomogram``,
        ``lattice_spacing_angstrom``, ``chunk_size``, ``projects``).
    tomograms : sequence of str
        The tilt series of the sample list.
    box, subbox : int
        Boxes of the first crop and of the subboxed particles, pixels.
    pixel_size : float
        Pixel size of the tomograms, Å.
    reference_marker : str
        The file of the step-3B marker the workflow reads (the user's or the proposal).
    """
    from dataclasses import replace

    tomograms = list(tomograms)
    reference_tomogram = protocol.get("reference_tomogram") or tomograms[0]
    if reference_tomogram not in tomograms:
        raise InputError("config: protocol.reference_tomogram",
                         f"{reference_tomogram!r} is not in the sample list ({tomograms})")  # fmt: skip
    defaults = default_stage_specs(
        box, subbox, pixel_size, reference_tomogram,
        float(protocol.get("lattice_spacing_angstrom") or HIV_LATTICE_SPACING_ANGSTROM),
        int(protocol.get("chunk_size") or 500), reference_marker,
    )  # fmt: skip
    overrides = protocol.get("projects") or {}
    unknown = sorted(set(overrides) - set(STAGES))
    if unknown:
        raise InputError(f"config: protocol.projects.{unknown[0]}",
                         f"unknown stage; stages: {', '.join(STAGES)}")  # fmt: skip
    out: dict[str, Project] = {}
    for stage, name in STAGES.items():
        where = f"config: protocol.projects.{stage}"
        spec = merge_stage_spec(defaults[stage], overrides.get(stage), where)
        spec["particles"] = STAGE_PARTICLES[stage]
        stage_box = box if STAGE_PARTICLES[stage] == "cropped" else subbox
        project = load_project(name, spec, stage_box, tomograms, where=f"{where}.")
        if project.per_tomogram:
            for ts in project.tomograms:
                out[f"{name}_{ts}"] = replace(project, name=f"{name}_{ts}", tomograms=(ts,))
        else:
            out[name] = project
    return out
