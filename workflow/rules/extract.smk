rule extract:
    input:
        data=DATA,
        defended=DEFENDED,
    output:
        weights=EXTRACTED,
        meta=sidecar(EXTRACTED),
    log:
        f"{LOGS}/extract/{{arch}}-{{compression}}+{{defense}}.log",
    benchmark:
        f"{BENCHMARKS}/extract/{{arch}}-{{compression}}+{{defense}}.tsv",
    params:
        cfg=config["extract"],
        seed=SEED_INDEPENDENT,  # the attacker's own training run
        device=config["device"],
        code=code_hash("extract"),
    threads: config["threads"]["defend"]
    resources:
        gpu=GPUS,
    priority: 1
    conda:
        CONDA_ENV
    script:
        "../scripts/extract.py"
