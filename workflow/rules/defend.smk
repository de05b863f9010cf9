rule defend:
    input:
        data=DATA,
        full=FULL.replace("{seed}", str(SEED_FULL)),
        sibling=SIBLING,
    output:
        weights=DEFENDED,
        meta=sidecar(DEFENDED),
    log:
        f"{LOGS}/defend/{{arch}}-{{compression}}+{{defense}}.log",
    benchmark:
        f"{BENCHMARKS}/defend/{{arch}}-{{compression}}+{{defense}}.tsv"
    priority: 1  # long jobs first, so short attack jobs fill the tail of the run
    conda:
        CONDA_ENV
    threads: config["threads"]["defend"]
    resources:
        gpu=GPUS,
    params:
        cfg=lambda w: config["defenses"][w.defense],
        seed=SEED_FULL,
        device=config["device"],
        code=lambda w: code_hash(
            "defend", **merged(model_uses(w.arch, "defended", f"{w.compression}+{w.defense}"))
        ),
    script:
        "../scripts/defend.py"
