rule data:
    output:
        data=PATHS.data,
        meta=sidecar(PATHS.data),
    log:
        f"{PATHS.logs}/data.log",
    benchmark:
        f"{PATHS.benchmarks}/data.tsv"
    conda:
        CONDA_ENV
    params:
        cfg=config["dataset"],
        code=PLAN.code("data", {"dataset": {config["dataset"]["name"]}}),
    script:
        "../scripts/data.py"
