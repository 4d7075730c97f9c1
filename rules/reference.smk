# Protocol step 3: the initial reference. The last average of the project named in
# protocol.reference_project is copied to results/reference/initial_average.mrc; the user
# marks the particle centre in it (annotations/reference_center.cmm); the particles are
# re-centred on that point and re-averaged into results/reference/initial_reference.mrc.


wildcard_constraints:
    view_map="initial_average|average_of_averages",


# the annotation step whose map each viewing copy is made for
VIEW_STEPS = {
    "initial_average": "reference_center",
    "average_of_averages": "particle_centers",
}


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


rule prepare_map_view:
    input:
        volume="results/reference/{view_map}.mrc",
    output:
        view="results/views/{view_map}_view.mrc",
    log:
        "logs/reference/{view_map}_view.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        lowpass_angstrom=lambda wc: ANNOTATION_STEPS[
            VIEW_STEPS[wc.view_map]
        ].view_lowpass_angstrom,
        invert=lambda wc: ANNOTATION_STEPS[VIEW_STEPS[wc.view_map]].view_invert,
    script:
        "../scripts/prepare_view.py"


rule centre_initial_reference:
    input:
        marker=get_marker_file("reference_center"),
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
