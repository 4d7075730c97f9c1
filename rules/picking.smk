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
    script:
        "../scripts/import_crop_table.py"
