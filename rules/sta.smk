# Alignment projects (Dynamo-style): rounds of iterations, each scattered over particle chunks.
#
# Per project P and iteration k (4 digits, 0000 = the start):
#   results/sta/P/ite_0000/{table.tbl, average.mrc}     start (checkpoint: fixes the chunk count)
#   results/sta/P/ite_k/chunks/align_{half}_{c}.tbl    alignment of one chunk against ite_(k-1)
#   results/sta/P/ite_k/table.tbl                      gathered table (CC threshold, separation)
#   results/sta/P/ite_k/chunks/sums_{half}_{c}.npz     partial Fourier sums of one chunk
#   results/sta/P/ite_k/{average.mrc, weight.mrc, average_half1.mrc, average_half2.mrc, fsc.tsv}
# Chunks are per half (half1 and half2: even and odd tags) in gold-standard projects, else "all".
# A killed project resumes from the last finished chunk; finished iterations never rerun.


wildcard_constraints:
    project="|".join(re.escape(p) for p in PROJECTS) or "no-projects",
    k=r"\d{4}",
    half="all|half1|half2",
    chunk=r"\d{3}",


checkpoint sta_start:
    input:
        particles=get_project_stacks,
        tables=get_project_tables,
        reference=get_project_reference_file,
        mask=get_project_mask,
        classification_mask=get_project_classification_mask,
        marker=get_project_recentre_marker,
    output:
        table="results/sta/{project}/ite_0000/table.tbl",
        index="results/sta/{project}/particles.csv",
        average="results/sta/{project}/ite_0000/average.mrc",
        half1="results/sta/{project}/ite_0000/average_half1.mrc",
        half2="results/sta/{project}/ite_0000/average_half2.mrc",
    log:
        "logs/sta/{project}/start.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        project=lambda wc: PROJECTS[wc.project],
        settings=project_settings,
        tomograms=lambda wc: list(PROJECTS[wc.project].tomograms),
    script:
        "../scripts/sta_start.py"


rule sta_align_chunk:
    input:
        table=lambda wc: iteration_file(wc.project, int(wc.k) - 1, "table.tbl"),
        reference=get_chunk_reference,
        origin=get_shift_origin_table,
        index="results/sta/{project}/particles.csv",
        particles=get_project_stacks,
        mask=get_project_mask,
        classification_mask=get_project_classification_mask,
        transfers=get_project_transfers,
    output:
        table="results/sta/{project}/ite_{k}/chunks/align_{half}_{chunk}.tbl",
    log:
        "logs/sta/{project}/ite_{k}/align_{half}_{chunk}.log",
    wildcard_constraints:
        k=r"(?!0000)\d{4}",  # iteration 0 is the start (sta_start)
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=GPUS,
    params:
        project=lambda wc: PROJECTS[wc.project],
        settings=project_settings,
        device=config["device"],
        # a round with mask: lattice aligns on the lattice layer beside the membrane
        lattice_spacing_angstrom=config["protocol"]["lattice_spacing_angstrom"],
        lattice_side=config["protocol"]["lattice_side"],
        transfer_tomos=get_project_transfer_tomos,
    script:
        "../scripts/sta_align_chunk.py"


rule sta_gather_table:
    input:
        previous=lambda wc: iteration_file(wc.project, int(wc.k) - 1, "table.tbl"),
        chunks=get_alignment_chunks,
    output:
        table="results/sta/{project}/ite_{k}/table.tbl",
        plot=report(
            "results/sta/{project}/ite_{k}/cc.png",
            caption="../report/sta_cc.rst",
            category="Alignment projects",
        ),
    log:
        "logs/sta/{project}/ite_{k}/gather_table.log",
    wildcard_constraints:
        k=r"(?!0000)\d{4}",  # iteration 0 is the start (sta_start)
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        project=lambda wc: PROJECTS[wc.project],
        settings=project_settings,
    script:
        "../scripts/sta_gather_table.py"


rule sta_average_chunk:
    input:
        table="results/sta/{project}/ite_{k}/table.tbl",
        index="results/sta/{project}/particles.csv",
        particles=get_project_stacks,
    output:
        sums=temp("results/sta/{project}/ite_{k}/chunks/sums_{half}_{chunk}.npz"),
    log:
        "logs/sta/{project}/ite_{k}/average_{half}_{chunk}.log",
    wildcard_constraints:
        k=r"(?!0000)\d{4}",  # iteration 0 is the start (sta_start)
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPUS,
    params:
        project=lambda wc: PROJECTS[wc.project],
        settings=project_settings,
        device=config["device"],
    script:
        "../scripts/sta_average_chunk.py"


rule sta_gather_average:
    input:
        sums=get_average_chunks,
        mask=get_project_mask,
    output:
        average="results/sta/{project}/ite_{k}/average.mrc",
        weight="results/sta/{project}/ite_{k}/weight.mrc",
        half1="results/sta/{project}/ite_{k}/average_half1.mrc",
        half2="results/sta/{project}/ite_{k}/average_half2.mrc",
        fsc="results/sta/{project}/ite_{k}/fsc.tsv",
        plot=report(
            "results/sta/{project}/ite_{k}/fsc.png",
            caption="../report/sta_fsc.rst",
            category="Alignment projects",
        ),
    log:
        "logs/sta/{project}/ite_{k}/gather_average.log",
    wildcard_constraints:
        k=r"(?!0000)\d{4}",  # iteration 0 is the start (sta_start)
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        project=lambda wc: PROJECTS[wc.project],
        settings=project_settings,
    script:
        "../scripts/sta_gather_average.py"
