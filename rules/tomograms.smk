# Tomograms: weighted back-projection of the aligned stack, and binned copies.


rule reconstruct_tomogram:
    input:
        aligned=get_stack_to_reconstruct,
        tlt="results/tiltseries/{ts}/{ts}.tlt",
    output:
        tomogram="results/tomograms/{ts}.mrc",
    log:
        "logs/reconstruct_tomogram/{ts}.log",
    benchmark:
        "logs/benchmarks/reconstruct_tomogram/{ts}.tsv"
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=GPUS,
    params:
        thickness_px=get_thickness,
        slab_size_px=config["reconstruction"]["slab_size_px"],
        dtype=config["reconstruction"]["dtype"],
        device=config["device"],
    script:
        "../scripts/reconstruct_tomogram.py"


rule bin_tomogram:
    input:
        tomogram="results/tomograms/{ts}.mrc",
    output:
        binned="results/tomograms/{ts}_bin{b}.mrc",
    log:
        "logs/bin_tomogram/{ts}_bin{b}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        dtype=config["reconstruction"]["dtype"],
    script:
        "../scripts/bin_tomogram.py"


rule tomogram_against_truth:
    input:
        tomogram="results/tomograms/{ts}.mrc",
        phantom=get_truth_phantom,
    output:
        table="results/validation/{ts}_tomogram_vs_truth.tsv",
        plot=report(
            "results/validation/{ts}_tomogram_vs_truth.png",
            caption="../report/tomogram_vs_truth.rst",
            category="Validation",
        ),
    log:
        "logs/tomogram_against_truth/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=10,
    script:
        "../scripts/tomogram_against_truth.py"


rule transfer_model:
    input:
        tomogram="results/tomograms/{ts}.mrc",
        tlt="results/tiltseries/{ts}/{ts}.tlt",
        order="results/tiltseries/{ts}/{ts}_order.csv",
        defocus="results/tiltseries/{ts}/{ts}.defocus",
        acquisition="results/tiltseries/{ts}/{ts}_acquisition.json",
    output:
        transfer="results/tomograms/{ts}_transfer.json",
    log:
        "logs/transfer_model/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        phase_flipped=config["ctf"]["phase_flip"],
        dose_weighting=config["dose_weighting"]["enabled"],
        dose_weighting_reduction=config["dose_weighting"]["reduction"],
    script:
        "../scripts/transfer_model.py"
