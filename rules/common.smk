# Config and sample-list validation, wildcard constraints and input functions.
# Anything non-trivial lives in stasnake.validation where pytest can reach it.
import math
import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from stasnake.errors import InputError
from stasnake.io.mdoc import read_mdoc
from stasnake.tilt.movie_files import find_movies
from stasnake.validation.samples import load_samples

validate(config, "../config/schema/config.schema.yaml")
try:
    SAMPLES = load_samples(config["samples"])
except InputError as exc:
    raise WorkflowError(f"Bad sample list: {exc}") from None
validate(SAMPLES, "../config/schema/samples.schema.yaml")
TILT_SERIES = list(SAMPLES.index)
GPUS = 1 if config["device"] == "cuda" else 0


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


def get_truth_phantom(wildcards):
    return config["validation"]["truth_phantom"].format(ts=wildcards.ts)


def get_import_table(wildcards):
    return config["picking"]["import_table"].format(ts=wildcards.ts)


def get_final_targets():
    targets = [
        "results/final/final.mrc",
        "results/final/half1_unfil.mrc",
        "results/final/half2_unfil.mrc",
        "results/final/final.tbl",
        "results/final/fsc.tsv",
        "results/final/particles.star",
        "results/final/tomograms.star",
    ]
    targets += expand("results/averages/{ts}.mrc", ts=TILT_SERIES)
    targets += expand(
        "results/tomograms/{ts}_bin{b}.mrc",
        ts=TILT_SERIES,
        b=config["reconstruction"]["binnings"],
    )
    if config["validation"].get("truth_map"):
        targets.append("results/validation/fsc_vs_truth.tsv")
    if config["validation"].get("truth_phantom"):
        targets += expand(
            "results/validation/{ts}_tomogram_vs_truth.tsv", ts=TILT_SERIES
        )
    return targets
