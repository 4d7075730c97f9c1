# Tilt series: motion correction of movies, import (sort by tilt angle, acquisition
# order, dose), CTF estimation, alignment, dose weighting and CTF correction.


rule correct_motion:
    input:
        mdoc=get_mdoc,
        movies=get_movie_files,
        gain=get_optional_gain_reference,
    output:
        stack="results/tiltseries/{ts}/{ts}_motioncorr.mrc",
        even="results/tiltseries/{ts}/{ts}_motioncorr_even.mrc",
        odd="results/tiltseries/{ts}/{ts}_motioncorr_odd.mrc",
        drift="results/tiltseries/{ts}/{ts}_drift.csv",
        plot=report(
            "results/tiltseries/{ts}/{ts}_drift.png",
            caption="../report/motion.rst",
            category="Tilt series",
            subcategory="{ts}",
        ),
    log:
        "logs/correct_motion/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        movies=get_movie_folder,
        overrides=get_acquisition_overrides,
        motion=config["motion"],
    script:
        "../scripts/correct_motion.py"


rule import_tiltseries:
    input:
        stack=get_raw_stack,
        mdoc=get_mdoc,
    output:
        stack="results/tiltseries/{ts}/{ts}.mrc",
        tlt="results/tiltseries/{ts}/{ts}.tlt",
        order="results/tiltseries/{ts}/{ts}_order.csv",
        acquisition="results/tiltseries/{ts}/{ts}_acquisition.json",
        views="results/tiltseries/{ts}/{ts}_views.csv",
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
        views=config["views"],
    script:
        "../scripts/import_tiltseries.py"


rule estimate_ctf:
    input:
        stack="results/tiltseries/{ts}/{ts}.mrc",
        tlt="results/tiltseries/{ts}/{ts}.tlt",
        order="results/tiltseries/{ts}/{ts}_order.csv",
        acquisition="results/tiltseries/{ts}/{ts}_acquisition.json",
        defocus=get_optional_defocus_file,
    output:
        ctffind="results/tiltseries/{ts}/{ts}_ctf.txt",
        defocus="results/tiltseries/{ts}/{ts}.defocus",
        table="results/tiltseries/{ts}/{ts}_ctf.csv",
        plot=report(
            "results/tiltseries/{ts}/{ts}_ctf.png",
            caption="../report/ctf.rst",
            category="Tilt series",
            subcategory="{ts}",
        ),
    log:
        "logs/estimate_ctf/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        ctf=config["ctf"],
    script:
        "../scripts/estimate_ctf.py"


rule align_tiltseries:
    input:
        stack="results/tiltseries/{ts}/{ts}.mrc",
        tlt="results/tiltseries/{ts}/{ts}.tlt",
        order="results/tiltseries/{ts}/{ts}_order.csv",
        acquisition="results/tiltseries/{ts}/{ts}_acquisition.json",
        xf=get_optional_alignment_xf,
    output:
        xf="results/tiltseries/{ts}/{ts}.xf",
        aligned="results/tiltseries/{ts}/{ts}_ali.mrc",
        report="results/tiltseries/{ts}/{ts}_alignment.txt",
        plot=report(
            "results/tiltseries/{ts}/{ts}_alignment.png",
            caption="../report/alignment.rst",
            category="Tilt series",
            subcategory="{ts}",
        ),
    log:
        "logs/align_tiltseries/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        alignment=config["alignment"],
    script:
        "../scripts/align_tiltseries.py"


rule dose_weight:
    input:
        aligned=get_stack_to_dose_weight,
        order="results/tiltseries/{ts}/{ts}_order.csv",
    output:
        weighted="results/tiltseries/{ts}/{ts}_ali_dw.mrc",
    log:
        "logs/dose_weight/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        voltage_kv=config["acquisition"]["voltage_kv"],
        reduction=config["dose_weighting"]["reduction"],
    script:
        "../scripts/dose_weight.py"


rule correct_ctf:
    input:
        aligned=get_stack_to_flip,
        tlt="results/tiltseries/{ts}/{ts}.tlt",
        acquisition="results/tiltseries/{ts}/{ts}_acquisition.json",
        defocus="results/tiltseries/{ts}/{ts}.defocus",
    output:
        flipped="results/tiltseries/{ts}/{ts}_ali_flipped.mrc",
    log:
        "logs/correct_ctf/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        tolerance_angstrom=config["ctf"]["defocus_tolerance_angstrom"],
    script:
        "../scripts/correct_ctf.py"
