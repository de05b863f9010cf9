rule similarity:
    input:
        data=PATHS.data,
        full=TARGET,
        sources=lambda w: [s["path"] for s in PLAN.similarity_sources(w.arch)],
    output:
        table=PATHS.similarity,
    log:
        f"{PATHS.logs}/similarity/{{arch}}.log",
    benchmark:
        f"{PATHS.benchmarks}/similarity/{{arch}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]["attack"]
    resources:
        gpu=GPUS,
    params:
        sources=lambda w: PLAN.similarity_sources(w.arch),
        cfg=config["similarity"],
        device=config["device"],
        code=lambda w: PLAN.similarity_code(w.arch),
    script:
        "../scripts/similarity.py"
