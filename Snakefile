# stasnake: cryo-ET tilt series to subtomogram averages.
# Stages live in rules/ (one file each, in pipeline order); numerics in the stasnake package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/tiltseries.smk"
include: "rules/tomograms.smk"
include: "rules/picking.smk"
include: "rules/averaging.smk"
include: "rules/sta.smk"
include: "rules/reference.smk"


if PROTOCOL_ON:

    include: "rules/protocol.smk"


include: "rules/export.smk"
include: "rules/final.smk"


rule all:
    default_target: True
    input:
        get_final_targets(),


rule tomograms:
    input:
        expand("results/tomograms/{ts}.mrc", ts=TILT_SERIES),
        expand(
            "results/tomograms/{ts}_bin{b}.mrc",
            ts=TILT_SERIES,
            b=config["reconstruction"]["binnings"],
        ),


rule export_particles:
    input:
        expand("results/export/dynamo/{ts}", ts=TILT_SERIES),
        expand("results/export/relion/{ts}_particles.star", ts=TILT_SERIES),


rule sta_projects:
    input:
        get_project_targets(),


rule averages:
    input:
        expand("results/averages/{ts}.mrc", ts=TILT_SERIES),
