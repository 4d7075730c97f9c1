# Picking: the crop table of each tomogram, imported (picking.method: import) or
# oversampled on the VLPs of the dipole annotations (picking.method: dipoles).


if config["picking"]["method"] == "import":

    rule import_crop_table:
        input:
            table=get_import_table,
            tomogram="results/tomograms/{ts}.mrc",
            tlt="results/tiltseries/{ts}/{ts}.tlt",
        output:
            table="results/picking/{ts}/crop.tbl",
        log:
            "logs/import_crop_table/{ts}.log",
        conda:
            "../envs/stasnake.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            tomo_number=get_tomo_number,
            shared_table=SHARED_CROP_TABLE,
            # only a shared table needs them (so that a new sample row reruns nothing else)
            all_tomo_numbers=(
                [int(n) for n in SAMPLES["tomo_number"]] if SHARED_CROP_TABLE else []
            ),
        script:
            "../scripts/import_crop_table.py"

else:

    rule oversample_vlps:
        input:
            dipoles=get_dipoles_file,
            tomogram="results/tomograms/{ts}.mrc",
            tlt="results/tiltseries/{ts}/{ts}.tlt",
            # the tomogram the dipoles were clicked in: their refinement onto the membrane
            binned=(
                f"results/tomograms/{{ts}}_bin{config['annotations']['dipole_binning']}.mrc"
                if config["picking"]["refine_dipoles"]
                else []
            ),
        output:
            table="results/picking/{ts}/crop.tbl",
            vlps="results/picking/{ts}/vlps.tsv",
        log:
            "logs/oversample_vlps/{ts}.log",
        conda:
            "../envs/stasnake.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            tomo_number=get_tomo_number,
            binning=config["annotations"]["dipole_binning"],
            spacing_px=config["picking"]["spacing_fraction_of_box"]
            * config["averaging"]["box_size_px"],
            radius_offset_angstrom=config["picking"]["radius_offset_angstrom"],
            refine=config["picking"]["refine_dipoles"],
            refine_search_fraction=config["picking"]["refine_dipoles_search_fraction"],
            bilayer_separation_angstrom=config["picking"]["bilayer_separation_angstrom"],
        script:
            "../scripts/oversample_vlps.py"


rule propose_dipoles:
    input:
        tomogram=f"results/tomograms/{{ts}}_bin{config['annotations']['dipole_binning']}.mrc",
        tlt="results/tiltseries/{ts}/{ts}.tlt",
    output:
        dipoles="results/proposals/{ts}/dipoles.csv",
        plot=report(
            "results/proposals/{ts}/dipoles.png",
            caption="../report/proposed_dipoles.rst",
            category="Picking",
        ),
    log:
        "logs/propose_dipoles/{ts}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        binning=config["annotations"]["dipole_binning"],
        radius_range_angstrom=config["picking"]["vlp_radius_range_angstrom"],
        bilayer_separation_angstrom=config["picking"]["bilayer_separation_angstrom"],
        min_zscore=config["picking"]["min_zscore"],
    script:
        "../scripts/propose_dipoles.py"


rule prepare_view:
    input:
        volume="results/tomograms/{ts}_bin{b}.mrc",
    output:
        view="results/views/{ts}_bin{b}_view.mrc",
    log:
        "logs/prepare_view/{ts}_bin{b}.log",
    conda:
        "../envs/stasnake.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        lowpass_angstrom=ANNOTATION_STEPS["dipoles"].view_lowpass_angstrom,
        invert=ANNOTATION_STEPS["dipoles"].view_invert,
    script:
        "../scripts/prepare_view.py"
