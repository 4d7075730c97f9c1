# Particle exports: Dynamo data folders and RELION subtomogram files (docs/particles.md).


rule export_dynamo_data:
    input:
        particles="results/particles/{ts}/particles.mrc",
        table="results/particles/{ts}/particles.tbl",
        tomogram="results/tomograms/{ts}.mrc",
    output:
        folder=directory("results/export/dynamo/{ts}"),
    log:
        "logs/export_dynamo_data/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        tag_padding=config["export"]["dynamo_tag_padding"],
        tomo_number=get_tomo_number,
    script:
        "../scripts/export_dynamo_data.py"


rule export_relion_subtomograms:
    input:
        particles="results/particles/{ts}/particles.mrc",
        table="results/particles/{ts}/particles.tbl",
        tomogram="results/tomograms/{ts}.mrc",
    output:
        star="results/export/relion/{ts}_particles.star",
        folder=directory("results/export/relion/Subtomograms/{ts}"),
    log:
        "logs/export_relion_subtomograms/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        tomo_number=get_tomo_number,
        optics=config["acquisition"],
    script:
        "../scripts/export_relion_subtomograms.py"
