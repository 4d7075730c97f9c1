# Cropping and per-tomogram averages.


rule crop_particles:
    input:
        tomogram="results/tomograms/{ts}.mrc",
        table="results/picking/{ts}/crop.tbl",
    output:
        particles="results/particles/{ts}/particles.mrc",
        table="results/particles/{ts}/particles.tbl",
    params:
        box_size_px=config["averaging"]["box_size_px"],
        edge_policy=config["averaging"]["edge_policy"],
    log:
        "logs/crop_particles/{ts}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/stasnake.yaml"
    script:
        "../scripts/crop_particles.py"


rule average_tomogram:
    input:
        particles="results/particles/{ts}/particles.mrc",
        table="results/particles/{ts}/particles.tbl",
    output:
        average="results/averages/{ts}.mrc",
    params:
        symmetry=config["averaging"]["symmetry"],
    log:
        "logs/average_tomogram/{ts}.log",
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=GPUS,
    conda:
        "../envs/stasnake.yaml"
    script:
        "../scripts/average_particles.py"
