rule extract:
    input:
        data=PATHS.data,
        victim=lambda w: PLAN.victim_path(w.arch, w.source),
    output:
        weights=PATHS.extracted,
        meta=sidecar(PATHS.extracted),
    log:
        f"{PATHS.logs}/extract/{{arch}}-{{source}}.log",
    benchmark:
        f"{PATHS.benchmarks}/extract/{{arch}}-{{source}}.tsv"
    priority: 1
    conda:
        CONDA_ENV
    threads: config["threads"]["defend"]
    resources:
        gpu=GPUS,
    params:
        cfg=config["extract"],
        seed=PLAN.seed_independent,  # the attacker's own training run
        device=config["device"],
        code=lambda w: PLAN.code("extract", PLAN.model_uses(w.arch, "defended", w.source)),
    script:
        "../scripts/extract.py"
