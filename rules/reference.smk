# Protocol step 3: the initial reference. The last average of the project named in
# protocol.reference_project is copied to results/reference/initial_average.mrc; the user
# marks the particle centre in it (annotations/reference_center.cmm); the particles are
# re-centred on that point and re-averaged into results/reference/initial_reference.mrc.


rule initial_average:
    input:
        average=lambda wc: reference_project_file("average.mrc"),
    output:
        average="results/reference/initial_average.mrc",
    log:
        "logs/reference/initial_average.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/copy_map.py"


rule prepare_reference_view:
    input:
        volume="results/reference/initial_average.mrc",
    output:
        view="results/views/initial_average_view.mrc",
    log:
        "logs/reference/initial_average_view.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        lowpass_angstrom=ANNOTATION_STEPS["reference_center"].view_lowpass_angstrom,
        invert=ANNOTATION_STEPS["reference_center"].view_invert,
    script:
        "../scripts/prepare_view.py"


rule centre_initial_reference:
    input:
        marker=get_reference_center_file,
        average="results/reference/initial_average.mrc",
        table=lambda wc: reference_project_file("table.tbl"),
        index=lambda wc: f"results/sta/{REFERENCE_PROJECT}/particles.csv",
        particles=lambda wc: [
            f"results/particles/{ts}/particles.mrc"
            for ts in PROJECTS[REFERENCE_PROJECT].tomograms
        ],
    output:
        average="results/reference/initial_reference.mrc",
        table="results/reference/initial_reference.tbl",
    log:
        "logs/reference/centre_initial_reference.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        device=config["device"],
    script:
        "../scripts/centre_initial_reference.py"
