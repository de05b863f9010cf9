rule extract:
    input:
        data=DATA,
        victim=lambda w: victim_path(w.arch, w.source),
    output:
        weights=EXTRACTED,
        meta=sidecar(EXTRACTED),
    log:
        f"{LOGS}/extract/{{arch}}-{{source}}.log",
    benchmark:
        f"{BENCHMARKS}/extract/{{arch}}-{{source}}.tsv"
    priority: 1
    conda:
        CONDA_ENV
    threads: config["threads"]["defend"]
    resources:
        gpu=GPUS,
    params:
        cfg=config["extract"],
        seed=SEED_INDEPENDENT,  # the attacker's own training run
        device=config["device"],
        code=lambda w: code_hash("extract", **merged(model_uses(w.arch, "defended", w.source))),
    script:
        "../scripts/extract.py"
