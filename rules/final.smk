# The final map: all tomograms merged, even/odd half-maps, FSC, validation and exports.


# with the protocol, rules/protocol.smk makes results/final/ (rule half_maps)
if not PROTOCOL_ON:

    rule final_average:
        input:
            particles=expand("results/particles/{ts}/particles.mrc", ts=TILT_SERIES),
            tables=expand("results/particles/{ts}/particles.tbl", ts=TILT_SERIES),
            transfers=transfer_files(TILT_SERIES),
        output:
            final="results/final/final.mrc",
            half1="results/final/half1_unfil.mrc",
            half2="results/final/half2_unfil.mrc",
            table="results/final/final.tbl",
            fsc="results/final/fsc.tsv",
            plot=report(
                "results/final/fsc.png",
                caption="../report/fsc.rst",
                category="Final map",
            ),
        log:
            "logs/final_average/final.log",
        conda:
            "../envs/stasnake.yaml"
        threads: 2
        resources:
            mem_mb=8000,
            runtime=60,
            gpu=GPUS,
        params:
            symmetry=config["averaging"]["symmetry"],
            wedge_compensation=config["averaging"]["wedge_compensation"],
            fmin_fraction=config["averaging"]["fmin_fraction"],
            device=config["device"],
            transfer_tomos=transfer_tomo_numbers(TILT_SERIES),
            interpolation_order=INTERPOLATION_BY_NAME[config["averaging"]["final_interpolation"]],
        script:
            "../scripts/final_average.py"


rule fsc_against_truth:
    input:
        final="results/final/final.mrc",
        truth=config["validation"]["truth_map"] or [],
    output:
        fsc="results/validation/fsc_vs_truth.tsv",
        plot=report(
            "results/validation/fsc_vs_truth.png",
            caption="../report/fsc_vs_truth.rst",
            category="Validation",
        ),
    log:
        "logs/fsc_against_truth/final.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        align=PROTOCOL_ON,  # the protocol's frame is set by clicks: align to the truth first
    script:
        "../scripts/fsc_against_truth.py"


rule export_relion:
    input:
        table="results/final/final.tbl",
        tomograms=expand("results/tomograms/{ts}.mrc", ts=TILT_SERIES),
    output:
        particles="results/final/particles.star",
        tomograms="results/final/tomograms.star",
    log:
        "logs/export_relion/final.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        names=TILT_SERIES,
        tomo_numbers=[int(SAMPLES.loc[t, "tomo_number"]) for t in TILT_SERIES],
        optics=config["acquisition"],
    script:
        "../scripts/export_relion.py"
