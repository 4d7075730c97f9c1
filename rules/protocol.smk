# The Dynamo HIV-1 VLP protocol, steps 4 to 9 (protocol.enabled; docs/protocol.md).
# Step 3 (initial reference) is rules/reference.smk; the projects are stasnake.protocol's.
#
#   results/averages/{ts}.mrc                    step 4: per-tomogram C6 average
#   results/reference/average_of_averages.*      step 5A: the averages aligned to each other
#   results/protocol/subboxed/{ts}/crop.tbl      step 5C-D: unit centres mapped to the tomogram
#   results/protocol/heights.tsv                 step 6B: z shift of each tomogram's average
#   results/protocol/cleaned/{ts}/crop.tbl       step 6A-B: CC threshold, duplicates, height
#   results/protocol/selected/{ts}/crop.tbl      step 8A: latitude-normalised CC filter
#   results/protocol/tight_mask.mrc              step 8B: membrane-following alignment mask
#   results/final/                               step 9: half-maps, final map, table, FSC
# Particle sets: results/protocol/{set}/{ts}/particles.{mrc,tbl}, cropped at the subbox size.


wildcard_constraints:
    particle_set="subboxed|cleaned|selected",


rule tomogram_average:
    input:
        average=lambda wc: protocol_last(f"protocol_tomogram_{wc.ts}", "average.mrc"),
    output:
        average="results/averages/{ts}.mrc",
    log:
        "logs/protocol/tomogram_average/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/copy_map.py"


rule average_of_averages:
    input:
        averages=expand("results/averages/{ts}.mrc", ts=TILT_SERIES),
    output:
        average="results/reference/average_of_averages.mrc",
        table="results/reference/average_of_averages.tbl",
    log:
        "logs/protocol/average_of_averages.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        search=lambda wc: average_of_averages_round(
            BOX, protocol_pixel_size(), PROTOCOL["lattice_spacing_angstrom"]
        ),
        tomo_numbers=[int(SAMPLES.loc[t, "tomo_number"]) for t in TILT_SERIES],
    script:
        "../scripts/average_of_averages.py"


rule propose_reference_center:
    input:
        average="results/reference/initial_average.mrc",
    output:
        markers="results/proposals/reference_center.cmm",
    log:
        "logs/protocol/propose_reference_center.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="reference_center",
        lattice_spacing_angstrom=PROTOCOL["lattice_spacing_angstrom"],
    script:
        "../scripts/propose_markers.py"


rule propose_particle_centers:
    input:
        average="results/reference/average_of_averages.mrc",
    output:
        markers="results/proposals/particle_centers.cmm",
    log:
        "logs/protocol/propose_particle_centers.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        kind="particle_centers",
        lattice_spacing_angstrom=PROTOCOL["lattice_spacing_angstrom"],
    script:
        "../scripts/propose_markers.py"


rule subbox_lattice:
    input:
        markers=get_marker_file("particle_centers"),
        merged="results/reference/average_of_averages.mrc",
        merged_table="results/reference/average_of_averages.tbl",
        table=lambda wc: protocol_last(f"protocol_tomogram_{wc.ts}", "table.tbl"),
        tomogram="results/tomograms/{ts}.mrc",
    output:
        table="results/protocol/subboxed/{ts}/crop.tbl",
    log:
        "logs/protocol/subbox_lattice/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        tomo_number=get_tomo_number,
        duplicate_distance_angstrom=PROTOCOL["duplicate_distance_angstrom"],
        lattice_spacing_angstrom=PROTOCOL["lattice_spacing_angstrom"],
        subbox_size_px=SUBBOX,
    script:
        "../scripts/subbox_lattice.py"


rule crop_protocol_particles:
    input:
        tomogram="results/tomograms/{ts}.mrc",
        table="results/protocol/{particle_set}/{ts}/crop.tbl",
    output:
        particles="results/protocol/{particle_set}/{ts}/particles.mrc",
        table="results/protocol/{particle_set}/{ts}/particles.tbl",
    log:
        "logs/protocol/crop/{particle_set}_{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=30,
    params:
        box_size_px=SUBBOX,
        edge_policy=config["averaging"]["edge_policy"],
    script:
        "../scripts/crop_particles.py"


rule register_heights:
    input:
        averages=[
            protocol_last(f"protocol_subboxed_{ts}", "average.mrc")
            for ts in TILT_SERIES
        ],
    output:
        heights="results/protocol/heights.tsv",
    log:
        "logs/protocol/register_heights.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        names=TILT_SERIES,
        max_shift_angstrom=PROTOCOL["height_max_shift_angstrom"],
        membrane_height_angstrom=PROTOCOL["membrane_height_angstrom"],
    script:
        "../scripts/register_heights.py"


rule clean_particles:
    input:
        table=lambda wc: protocol_last(f"protocol_subboxed_{wc.ts}", "table.tbl"),
        heights="results/protocol/heights.tsv",
    output:
        table="results/protocol/cleaned/{ts}/crop.tbl",
        report="results/protocol/cleaned/{ts}/cc_threshold.tsv",
        plot=report(
            "results/protocol/cleaned/{ts}/cc_threshold.png",
            caption="../report/cc_threshold.rst",
            category="Protocol",
        ),
    log:
        "logs/protocol/clean_particles/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        gmm_offset=PROTOCOL["gmm_offset"],
        latitude_normalised=PROTOCOL["gmm_latitude_normalised"],
        duplicate_distance_angstrom=PROTOCOL["duplicate_distance_angstrom"],
        lattice_spacing_angstrom=PROTOCOL["lattice_spacing_angstrom"],
        halves_by_vlp=PROTOCOL["halves_by_vlp"],
        tomo_number=get_tomo_number,
    script:
        "../scripts/clean_particles.py"


rule select_by_latitude:
    input:
        table=lambda wc: protocol_last("protocol_gold", "table.tbl"),
        index="results/sta/protocol_gold/particles.csv",
    output:
        tables=expand("results/protocol/selected/{ts}/crop.tbl", ts=TILT_SERIES),
        report="results/protocol/selected/latitude_cc.tsv",
        plots=report(
            expand(
                "results/protocol/selected/{ts}/latitude_cc_half{h}.png",
                ts=TILT_SERIES,
                h=(1, 2),
            ),
            caption="../report/latitude_cc.rst",
            category="Protocol",
        ),
    log:
        "logs/protocol/select_by_latitude.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        names=TILT_SERIES,
        n_sd=PROTOCOL["latitude_n_sd"],
    script:
        "../scripts/select_by_latitude.py"


rule tight_mask:
    input:
        average=lambda wc: protocol_last("protocol_gold", "average.mrc"),
    output:
        mask="results/protocol/tight_mask.mrc",
    log:
        "logs/protocol/tight_mask.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        lattice_spacing_angstrom=PROTOCOL["lattice_spacing_angstrom"],
        include_membrane=PROTOCOL["tight_mask_membrane"],
    script:
        "../scripts/tight_mask.py"


rule half_maps:
    input:
        table=lambda wc: protocol_last("protocol_refined", "table.tbl"),
        half1=lambda wc: protocol_last("protocol_refined", "average_half1.mrc"),
        half2=lambda wc: protocol_last("protocol_refined", "average_half2.mrc"),
        mask="results/protocol/tight_mask.mrc",
        index="results/sta/protocol_refined/particles.csv",
        particles=[particle_files("selected", ts)["stack"] for ts in TILT_SERIES],
        transfers=transfer_files(TILT_SERIES),
    output:
        final="results/final/final.mrc",
        half1="results/final/half1_unfil.mrc",
        half2="results/final/half2_unfil.mrc",
        table="results/final/final.tbl",
        fsc="results/final/fsc.tsv",
        plot=report(
            "results/final/fsc.png", caption="../report/fsc.rst", category="Final map"
        ),
    log:
        "logs/protocol/half_maps.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
        gpu=GPUS,
    params:
        symmetry="c6",
        fmin_fraction=config["averaging"]["fmin_fraction"],
        device=config["device"],
        transfer_tomos=transfer_tomo_numbers(TILT_SERIES),
        interpolation_order=INTERPOLATION_BY_NAME[config["averaging"]["final_interpolation"]],
    script:
        "../scripts/half_maps.py"


rule protocol_accuracy:
    input:
        truth=(
            [
                config["validation"]["truth_particles"].format(ts=ts)
                for ts in TILT_SERIES
            ]
            if config["validation"].get("truth_particles")
            else []
        ),
        oversampled=expand("results/picking/{ts}/crop.tbl", ts=TILT_SERIES),
        subboxed=expand("results/protocol/subboxed/{ts}/crop.tbl", ts=TILT_SERIES),
        cleaned=expand("results/protocol/cleaned/{ts}/crop.tbl", ts=TILT_SERIES),
        selected=expand("results/protocol/selected/{ts}/crop.tbl", ts=TILT_SERIES),
        final="results/final/final.mrc",
        final_table="results/final/final.tbl",
        truth_map=config["validation"]["truth_map"] or [],
    output:
        picking="results/validation/picking.tsv",
        poses="results/validation/poses.tsv",
    log:
        "logs/protocol/protocol_accuracy.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        names=TILT_SERIES,
        lattice_spacing_angstrom=PROTOCOL["lattice_spacing_angstrom"],
    script:
        "../scripts/protocol_accuracy.py"
