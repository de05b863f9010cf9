rule compress:
    input:
        data=PATHS.data,
        full=TARGET,
    output:
        weights=PATHS.sibling,
        meta=sidecar(PATHS.sibling),
    log:
        f"{PATHS.logs}/compress/{{arch}}-{{compression}}.log",
    benchmark:
        f"{PATHS.benchmarks}/compress/{{arch}}-{{compression}}.tsv"
    priority: 1  # long jobs first, so short attack jobs fill the tail of the run
    conda:
        CONDA_ENV
    threads: config["threads"]["compress"]
    resources:
        gpu=GPUS,
    params:
        cfg=lambda w: config["compressions"][w.compression],
        seed=SEED_FULL,
        device=config["device"],
        code=lambda w: PLAN.code("compress", PLAN.model_uses(w.arch, "sibling", w.compression)),
    script:
        "../scripts/compress.py"
