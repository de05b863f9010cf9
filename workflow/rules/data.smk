rule data:
    output:
        data=DATA,
        meta=sidecar(DATA),
    log:
        f"{LOGS}/data.log",
    benchmark:
        f"{BENCHMARKS}/data.tsv",
    params:
        cfg=config["dataset"],
        code=code_hash("data", dataset=DATASET),
    conda:
        CONDA_ENV
    script:
        "../scripts/data.py"
