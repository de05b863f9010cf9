rule similarity:
    input:
        data=DATA,
        full=FULL.replace("{seed}", str(SEED_FULL)),
        sources=lambda w: [s["path"] for s in similarity_sources(w.arch)],
    output:
        table=SIMILARITY,
    log:
        f"{LOGS}/similarity/{{arch}}.log",
    benchmark:
        f"{BENCHMARKS}/similarity/{{arch}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]["attack"]
    resources:
        gpu=GPUS,
    params:
        sources=lambda w: similarity_sources(w.arch),
        cfg=config["similarity"],
        device=config["device"],
        code=similarity_code,
    script:
        "../scripts/similarity.py"
