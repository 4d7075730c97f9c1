# Tilt series: import (sort by tilt angle, acquisition order, dose) and alignment.


rule import_tiltseries:
    input:
        stack=get_raw_stack,
        mdoc=get_mdoc,
    output:
        stack="results/tiltseries/{ts}/{ts}.mrc",
        tlt="results/tiltseries/{ts}/{ts}.tlt",
        order="results/tiltseries/{ts}/{ts}_order.csv",
        acquisition="results/tiltseries/{ts}/{ts}_acquisition.json",
    log:
        "logs/import_tiltseries/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        overrides=get_acquisition_overrides,
        exclude_views=get_exclude_views,
    script:
        "../scripts/import_tiltseries.py"


rule align_tiltseries:
    input:
        stack="results/tiltseries/{ts}/{ts}.mrc",
        order="results/tiltseries/{ts}/{ts}_order.csv",
        acquisition="results/tiltseries/{ts}/{ts}_acquisition.json",
        xf=get_alignment_xf,
    output:
        xf="results/tiltseries/{ts}/{ts}.xf",
        aligned="results/tiltseries/{ts}/{ts}_ali.mrc",
    log:
        "logs/align_tiltseries/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/align_tiltseries.py"


rule correct_ctf:
    input:
        aligned="results/tiltseries/{ts}/{ts}_ali.mrc",
        order="results/tiltseries/{ts}/{ts}_order.csv",
        acquisition="results/tiltseries/{ts}/{ts}_acquisition.json",
        defocus=get_defocus_file,
    output:
        flipped="results/tiltseries/{ts}/{ts}_ali_flipped.mrc",
        defocus="results/tiltseries/{ts}/{ts}.defocus",
    log:
        "logs/correct_ctf/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/correct_ctf.py"
