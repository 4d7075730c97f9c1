# Picking: the crop table of each tomogram (imported until automatic picking lands).


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
