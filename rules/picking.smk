# Picking: the crop table of each tomogram (imported until automatic picking lands).


rule import_crop_table:
    input:
        table=get_import_table,
        tomogram="results/tomograms/{ts}.mrc",
        tlt="results/tiltseries/{ts}/{ts}.tlt",
    output:
        table="results/picking/{ts}/crop.tbl",
    params:
        tomo_number=get_tomo_number,
    log:
        "logs/import_crop_table/{ts}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/stasnake.yaml"
    script:
        "../scripts/import_crop_table.py"
