rule defend:
    input:
        data=PATHS.data,
        full=TARGET,
        sibling=PATHS.sibling,
    output:
        weights=PATHS.defended,
        meta=sidecar(PATHS.defended),
    log:
        f"{PATHS.logs}/defend/{{arch}}-{{compression}}+{{defense}}.log",
    benchmark:
        f"{PATHS.benchmarks}/defend/{{arch}}-{{compression}}+{{defense}}.tsv"
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
        code=lambda w: PLAN.code(
            "defend", PLAN.model_uses(w.arch, "defended", f"{w.compression}+{w.defense}")
        ),
    script:
        "../scripts/defend.py"
