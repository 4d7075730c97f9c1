# Config and sample-list validation, wildcard constraints and input functions.
# Anything non-trivial lives in stasnake.validation where pytest can reach it.
import dataclasses
import math
import re
import sys
from types import SimpleNamespace

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from stasnake.annotations import (
    ANNOTATION_STEPS,
    annotation_path,
    annotation_source,
    format_missing_message,
    missing_annotations,
)
from stasnake.errors import InputError
from stasnake.io.dynamo_table import read_table
from stasnake.io.mdoc import read_mdoc
from stasnake.protocol import (
    average_of_averages_round,
    default_subbox,
    protocol_projects,
)
from stasnake.sta.average import INTERPOLATION_BY_NAME
from stasnake.sta.project import (
    PARTICLE_SETS,
    chunk_labels,
    load_projects,
    referenced_project,
)
from stasnake.tilt.importing import mdoc_pixel_size
from stasnake.tilt.movie_files import find_movies
from stasnake.validation.samples import load_samples

validate(config, "../config/schema/config.schema.yaml")
try:
    SAMPLES = load_samples(config["samples"])
except InputError as exc:
    raise WorkflowError(f"Bad sample list: {exc}") from None
validate(SAMPLES, "../config/schema/samples.schema.yaml")
TILT_SERIES = list(SAMPLES.index)


wildcard_constraints:
    ts="|".join(re.escape(t) for t in TILT_SERIES),
    b=r"\d+",


def sample_value(ts, column):
    """One sample-list value (None where the row leaves it empty; validate() turns None into NaN)."""
    value = SAMPLES.loc[ts, column]
    return (
        None
        if value is None or (isinstance(value, float) and math.isnan(value))
        else value
    )


def get_raw_stack(wildcards):
    """The sample list's stack, or the motion-corrected sums of its movies."""
    if sample_value(wildcards.ts, "movies") is not None:
        return f"results/tiltseries/{wildcards.ts}/{wildcards.ts}_motioncorr.mrc"
    return sample_value(wildcards.ts, "tilt_series")


def get_movie_folder(wildcards):
    return sample_value(wildcards.ts, "movies")


def get_movie_files(wildcards):
    """The movies the mdoc names, so that Snakemake tracks them; a problem is left
    for the job to report (naming the mdoc and file) so other tilt series go on."""
    try:
        _, sections = read_mdoc(get_mdoc(wildcards))
        return [
            str(p)
            for p in find_movies(
                sections, get_movie_folder(wildcards), get_mdoc(wildcards)
            )
        ]
    except InputError:
        return []


def get_optional_gain_reference(wildcards):
    return sample_value(wildcards.ts, "gain_reference") or []


def get_mdoc(wildcards):
    return sample_value(wildcards.ts, "mdoc")


def get_exclude_views(wildcards):
    return sample_value(wildcards.ts, "exclude_views") or ""


def get_defocus_file(wildcards):
    return sample_value(wildcards.ts, "defocus_file")


def get_stack_to_dose_weight(wildcards):
    return f"results/tiltseries/{wildcards.ts}/{wildcards.ts}_ali.mrc"


def get_stack_to_flip(wildcards):
    """The dose-weighted aligned stack when dose weighting is on, else the aligned one."""
    if config["dose_weighting"]["enabled"]:
        return f"results/tiltseries/{wildcards.ts}/{wildcards.ts}_ali_dw.mrc"
    return get_stack_to_dose_weight(wildcards)


def get_stack_to_reconstruct(wildcards):
    """The phase-flipped stack when phase flipping is on, else the (dose-weighted) aligned one."""
    if config["ctf"]["phase_flip"]:
        return f"results/tiltseries/{wildcards.ts}/{wildcards.ts}_ali_flipped.mrc"
    return get_stack_to_flip(wildcards)


def get_optional_defocus_file(wildcards):
    """The sample list's defocus file (imported instead of estimated), or nothing."""
    return get_defocus_file(wildcards) or []


def get_optional_alignment_xf(wildcards):
    """The sample list's .xf (imported instead of estimated), or nothing."""
    return sample_value(wildcards.ts, "alignment_xf") or []


def get_acquisition_overrides(wildcards):
    """Config overrides, then per-row overrides, of mdoc acquisition values."""
    overrides = dict(config["acquisition"])
    for key in ("pixel_size_angstrom", "tilt_axis_angle_deg", "dose_per_tilt_e_per_A2"):
        row_value = sample_value(wildcards.ts, key)
        if row_value is not None:
            overrides[key] = row_value
    return overrides


def get_thickness(wildcards):
    row_value = sample_value(wildcards.ts, "thickness_px")
    return (
        int(row_value)
        if row_value is not None
        else config["reconstruction"]["thickness_px"]
    )


def get_tomo_number(wildcards):
    return int(sample_value(wildcards.ts, "tomo_number"))


def transfer_files(tilt_series):
    """The tomograms' transfer models (CTF-weighted averaging, averaging.ctf_weighting), or nothing."""
    if not config["averaging"]["ctf_weighting"]:
        return []
    return [f"results/tomograms/{ts}_transfer.json" for ts in tilt_series]


def transfer_tomo_numbers(tilt_series):
    """The table tomo number of each of transfer_files(tilt_series)."""
    if not config["averaging"]["ctf_weighting"]:
        return []
    return [int(sample_value(ts, "tomo_number")) for ts in tilt_series]


def _scores_with_ctf(project):
    return any(r.ctf_scores for r in project.rounds)


def get_project_transfers(wildcards):
    """The transfer models of a project whose rounds score with the CTF (ctf_scores), or nothing."""
    project = PROJECTS[wildcards.project]
    return transfer_files(project.tomograms) if _scores_with_ctf(project) else []


def get_project_transfer_tomos(wildcards):
    project = PROJECTS[wildcards.project]
    return transfer_tomo_numbers(project.tomograms) if _scores_with_ctf(project) else []


def get_truth_phantom(wildcards):
    return config["validation"]["truth_phantom"].format(ts=wildcards.ts)


def get_import_table(wildcards):
    return config["picking"]["import_table"].format(ts=wildcards.ts)


# The protocol's steps 3-9 (rules/protocol.smk): generated projects, defaults scaled to the
# pixel size and boxes of the data (stasnake.protocol).
PROTOCOL = config["protocol"]
PROTOCOL_ON = PROTOCOL["enabled"]
BOX = config["averaging"]["box_size_px"]
SUBBOX = PROTOCOL["subbox_size_px"] or default_subbox(BOX)
BOXES = {s: BOX if s == "cropped" else SUBBOX for s in PARTICLE_SETS}


def protocol_pixel_size():
    """Pixel size (Å) of the first tilt series: config or sample list, else its mdoc."""
    ts = TILT_SERIES[0]
    apix = get_acquisition_overrides(SimpleNamespace(ts=ts))["pixel_size_angstrom"]
    if apix is None:
        header, sections = read_mdoc(sample_value(ts, "mdoc"))
        apix = mdoc_pixel_size(header, sections)
    if not apix:
        raise WorkflowError(
            f"{sample_value(ts, 'mdoc')}: no pixel size (PixelSpacing); the protocol's "
            "defaults need it: set acquisition.pixel_size_angstrom"
        )
    return float(apix)


try:
    PROJECTS = load_projects(config.get("sta_projects"), BOXES, TILT_SERIES)
    if PROTOCOL_ON:
        clash = [p for p in PROJECTS if p.startswith("protocol_")]
        if clash:
            raise InputError(
                f"config: sta_projects.{clash[0]}",
                "names starting with protocol_ are the protocol's own projects",
            )
        PROJECTS.update(
            protocol_projects(
                PROTOCOL,
                TILT_SERIES,
                BOX,
                SUBBOX,
                protocol_pixel_size(),
                reference_marker=str(
                    annotation_source("reference_center", None, config)
                    or annotation_path("reference_center")
                ),
            )
        )
    if not config["averaging"]["ctf_weighting"]:
        ctf_scored = [p for p, proj in PROJECTS.items() if any(r.ctf_scores for r in proj.rounds)]
        if ctf_scored:
            raise InputError(
                f"project {ctf_scored[0]}",
                "a round with ctf_scores: true needs averaging.ctf_weighting: true "
                "(the tomograms' transfer models)",
            )
except InputError as exc:
    raise WorkflowError(f"Bad alignment project: {exc}") from None
GPUS = 1 if config["device"] == "cuda" else 0
# one crop table for all tilt series (rows matched by tomo number) unless the path holds {ts}
SHARED_CROP_TABLE = "{ts}" not in config["picking"]["import_table"]
PICK_DIPOLES = config["picking"]["method"] == "dipoles"
DIPOLE_BINNING = config["annotations"]["dipole_binning"]
if PICK_DIPOLES and DIPOLE_BINNING not in config["reconstruction"]["binnings"]:
    raise WorkflowError(
        f"config: annotations.dipole_binning {DIPOLE_BINNING} is not one of "
        f"reconstruction.binnings {config['reconstruction']['binnings']}: the dipoles are "
        "clicked in that binned tomogram"
    )
# Manual annotations: tilt series whose dipoles are missing stop before picking; one
# message lists every missing file (the workflow never writes into annotations/).
MISSING_DIPOLES = (
    missing_annotations(TILT_SERIES, config, steps=["dipoles"]) if PICK_DIPOLES else []
)
PICKABLE = [
    ts for ts in TILT_SERIES if ts not in {m.tilt_series for m in MISSING_DIPOLES}
]
# Step 3: the initial reference is the last average of this project, centred on the
# user's marker (annotations/reference_center.cmm).
REFERENCE_PROJECT = (
    "protocol_reference" if PROTOCOL_ON else config["protocol"]["reference_project"]
)
INITIAL_REFERENCE = "results/reference/initial_reference.mrc"
if PROTOCOL_ON and config["protocol"]["reference_project"] is not None:
    raise WorkflowError(
        "config: protocol.reference_project is for a hand-made step 3; with protocol.enabled "
        "the protocol's own project protocol_reference makes the initial reference: remove it"
    )
if REFERENCE_PROJECT is not None and REFERENCE_PROJECT not in PROJECTS:
    raise WorkflowError(
        f"config: protocol.reference_project {REFERENCE_PROJECT!r} is not one of the "
        f"sta_projects ({', '.join(PROJECTS) or 'none'})"
    )
MISSING_MARKERS = (
    missing_annotations([], config, steps=["reference_center"])
    if REFERENCE_PROJECT is not None
    else []
)
# Step 5B: the lattice unit centres marked in the average of averages.
MISSING_CENTERS = (
    missing_annotations([], config, steps=["particle_centers"]) if PROTOCOL_ON else []
)
if (MISSING_DIPOLES or MISSING_MARKERS or MISSING_CENTERS) and workflow.is_main_process:
    print(
        format_missing_message(MISSING_DIPOLES + MISSING_MARKERS + MISSING_CENTERS),
        file=sys.stderr,
    )


def get_final_targets():
    """Everything the default target makes; with annotations missing, what can be made now
    (tomograms, viewing copies, the annotated tilt series) and nothing that needs all of them.
    """
    targets = expand(
        "results/tomograms/{ts}_bin{b}.mrc",
        ts=TILT_SERIES,
        b=config["reconstruction"]["binnings"],
    )
    if config["validation"].get("truth_phantom"):
        targets += expand(
            "results/validation/{ts}_tomogram_vs_truth.tsv", ts=TILT_SERIES
        )
    targets += [m.view_path for m in MISSING_DIPOLES]
    targets += expand(
        "results/averages/{ts}_raw.mrc" if PROTOCOL_ON else "results/averages/{ts}.mrc",
        ts=PICKABLE,
    )
    if config["export"]["dynamo_data_folder"]:
        targets += expand("results/export/dynamo/{ts}", ts=PICKABLE)
    if config["export"]["relion_subtomograms"]:
        targets += expand("results/export/relion/{ts}_particles.star", ts=PICKABLE)
    if MISSING_DIPOLES:
        return targets  # the merged stages need every tilt series
    targets += get_project_targets()
    if REFERENCE_PROJECT is not None:
        targets += ["results/reference/initial_average.mrc"]
        if not MISSING_MARKERS:
            targets += [INITIAL_REFERENCE]
        elif PROTOCOL_ON:  # everything after step 3 waits for the marker
            return targets + [m.view_path for m in MISSING_MARKERS]
        else:
            targets += [m.view_path for m in MISSING_MARKERS]
    if PROTOCOL_ON:
        targets += expand("results/averages/{ts}.mrc", ts=TILT_SERIES)
        targets += ["results/reference/average_of_averages.mrc"]
        if MISSING_CENTERS:
            return targets + [m.view_path for m in MISSING_CENTERS]
        targets += protocol_report_targets()
    targets += [
        "results/final/final.mrc",
        "results/final/half1_unfil.mrc",
        "results/final/half2_unfil.mrc",
        "results/final/final.tbl",
        "results/final/fsc.tsv",
        "results/final/particles.star",
        "results/final/tomograms.star",
    ]
    if config["validation"].get("truth_map"):
        targets.append("results/validation/fsc_vs_truth.tsv")
    return targets


def reference_project_file(name):
    """A file of the last iteration of the step-3 reference project."""
    project = PROJECTS[REFERENCE_PROJECT]
    return iteration_file(REFERENCE_PROJECT, project.n_iterations, name)


def get_marker_file(kind):
    """Input function: the user's marker file of ``kind``, else the autopilot's proposal;
    a missing file stops the job with the full message."""

    def marker_file(wildcards):
        source = annotation_source(kind, None, config)
        if source is None:
            raise WorkflowError(
                format_missing_message(missing_annotations([], config, steps=[kind]))
            )
        return str(source)

    return marker_file


def project_ready(name):
    """False while a project waits for a missing marker: the reference centre (its chain
    starts from the centred initial reference) or the unit centres (it reads re-cropped
    particles, which need them)."""
    seen = set()
    while name is not None and name not in seen:
        seen.add(name)
        if PROJECTS[name].reference == INITIAL_REFERENCE and MISSING_MARKERS:
            return False
        if PROJECTS[name].particles != "cropped" and (
            MISSING_MARKERS or MISSING_CENTERS
        ):
            return False
        name = referenced_project(PROJECTS[name], PROJECTS)
    return True


def get_dipoles_file(wildcards):
    """The user's dipoles, else the autopilot's proposal; a missing file stops the job
    with the message that lists every missing annotation."""
    source = annotation_source("dipoles", wildcards.ts, config)
    if source is None:
        raise WorkflowError(
            format_missing_message(
                missing_annotations([wildcards.ts], config, steps=["dipoles"])
            )
        )
    return str(source)


# Alignment projects (rules/sta.smk)


def project_of(wildcards):
    return PROJECTS[wildcards.project]


def project_settings(wildcards):
    """The project's settings as plain values, for Snakemake's params trigger.

    Snakemake compares only representable params (str, numbers, containers) between runs; a
    ``Project`` object is skipped, so without this an edited project would rerun nothing.
    """
    return repr(dataclasses.asdict(PROJECTS[wildcards.project]))


def iteration_file(project, k, name):
    return f"results/sta/{project}/ite_{int(k):04d}/{name}"


def particle_files(particles, ts):
    """Stack and table of one tilt series in a particle set (stasnake.sta.project.PARTICLE_SETS)."""
    base = (
        f"results/particles/{ts}"
        if particles == "cropped"
        else f"results/protocol/{particles}/{ts}"
    )
    return {"stack": f"{base}/particles.mrc", "table": f"{base}/particles.tbl"}


def get_project_stacks(wildcards):
    project = project_of(wildcards)
    return [particle_files(project.particles, ts)["stack"] for ts in project.tomograms]


def get_project_tables(wildcards):
    project = project_of(wildcards)
    return [particle_files(project.particles, ts)["table"] for ts in project.tomograms]


def get_project_reference_file(wildcards):
    """The starting reference map: none (the average), a file, or another project's last average."""
    project = project_of(wildcards)
    source = referenced_project(project, PROJECTS)
    if source is not None:
        return iteration_file(source, PROJECTS[source].n_iterations, "average.mrc")
    return [] if project.reference == "average" else project.reference


def get_project_mask(wildcards):
    return project_of(wildcards).mask or []


def get_project_recentre_marker(wildcards):
    return project_of(wildcards).recentre_marker or []


def get_project_classification_mask(wildcards):
    return project_of(wildcards).classification_mask or []


def checked_iteration(wildcards):
    """Iteration k of the wildcards, which must exist in the project (1..n)."""
    k, n = int(wildcards.k), project_of(wildcards).n_iterations
    if not 1 <= k <= n:
        raise WorkflowError(
            f"project {wildcards.project} has iterations 1..{n}; ite_{k:04d} does not exist"
        )
    return k


def get_chunk_reference(wildcards):
    k = checked_iteration(wildcards)
    name = "average.mrc" if wildcards.half == "all" else f"average_{wildcards.half}.mrc"
    return iteration_file(wildcards.project, k - 1, name)


def get_shift_origin_table(wildcards):
    k = checked_iteration(wildcards)
    origin = project_of(wildcards).shift_origin_iteration(k)
    return (
        [] if origin is None else iteration_file(wildcards.project, origin, "table.tbl")
    )


def project_chunks(wildcards, split_halves=False):
    """(half, chunk) pairs of a project; the chunk count comes from its start table."""
    project = project_of(wildcards)
    table = checkpoints.sta_start.get(project=wildcards.project).output.table
    return chunk_labels(read_table(table), project, split_halves)


def get_alignment_chunks(wildcards):
    checked_iteration(wildcards)
    return [
        f"results/sta/{wildcards.project}/ite_{wildcards.k}/chunks/align_{h}_{c:03d}.tbl"
        for h, c in project_chunks(wildcards)
    ]


def get_average_chunks(wildcards):
    checked_iteration(wildcards)
    return [
        f"results/sta/{wildcards.project}/ite_{wildcards.k}/chunks/sums_{h}_{c:03d}.npz"
        for h, c in project_chunks(wildcards, split_halves=True)
    ]


def get_project_targets():
    """The last iteration's average and table of every configured project that can run."""
    return [
        iteration_file(name, p.n_iterations, f)
        for name, p in PROJECTS.items()
        if project_ready(name)
        for f in ("average.mrc", "table.tbl", "fsc.tsv")
    ]


# The protocol (rules/protocol.smk)


def protocol_last(project, name):
    """A file of the last iteration of a protocol project."""
    return iteration_file(project, PROJECTS[project].n_iterations, name)


def protocol_report_targets():
    """The protocol's reports besides the final map: plots of every cleaning step and, on
    synthetic data, the accuracy of picking and poses against the truth."""
    targets = expand("results/protocol/cleaned/{ts}/cc_threshold.png", ts=TILT_SERIES)
    targets += ["results/protocol/selected/latitude_cc.tsv"]
    if config["validation"].get("truth_particles") and config["validation"].get(
        "truth_map"
    ):
        targets += ["results/validation/picking.tsv", "results/validation/poses.tsv"]
    return targets
