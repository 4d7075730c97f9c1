# Cropping and per-tomogram averages.


RAW_AVERAGE = (
    "results/averages/{ts}_raw.mrc" if PROTOCOL_ON else "results/averages/{ts}.mrc"
)


rule crop_particles:
    input:
        tomogram="results/tomograms/{ts}.mrc",
        table="results/picking/{ts}/crop.tbl",
    output:
        particles="results/particles/{ts}/particles.mrc",
        table="results/particles/{ts}/particles.tbl",
    log:
        "logs/crop_particles/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        box_size_px=config["averaging"]["box_size_px"],
        edge_policy=config["averaging"]["edge_policy"],
    script:
        "../scripts/crop_particles.py"


rule average_tomogram:
    input:
        particles="results/particles/{ts}/particles.mrc",
        table="results/particles/{ts}/particles.tbl",
        transfers=lambda wc: transfer_files([wc.ts]),
    output:
        # with the protocol, results/averages/{ts}.mrc is the aligned C6 average (step 4)
        average=RAW_AVERAGE,
        weight="results/averages/{ts}_weight.mrc",
    log:
        "logs/average_tomogram/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=GPUS,
    params:
        symmetry=config["averaging"]["symmetry"],
        wedge_compensation=config["averaging"]["wedge_compensation"],
        fmin_fraction=config["averaging"]["fmin_fraction"],
        device=config["device"],
        transfer_tomos=lambda wc: transfer_tomo_numbers([wc.ts]),
    script:
        "../scripts/average_particles.py"
