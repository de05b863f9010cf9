rule data:
    output:
        data=DATA,
        meta=sidecar(DATA),
    log:
        f"{LOGS}/data.log",
    benchmark:
        f"{BENCHMARKS}/data.tsv"
    conda:
        CONDA_ENV
    params:
        cfg=config["dataset"],
        code=code_hash("data", dataset=DATASET),
    script:
        "../scripts/data.py"
