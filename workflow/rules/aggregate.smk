rule aggregate:
    input:
        **{role: paths for role, paths in MODEL_SIDECARS.items()},
        tables=ATTACK_TABLES,
        similarity=SIMILARITY_TABLES,
    output:
        benchmark=BENCHMARK,
        models=MODELS,
        similarity=SIMILARITY_ALL,
        correlations=CORRELATIONS,
        queries=QUERY_READINGS,
        support=SUPPORT_TABLE,
        config=f"results/{NAME}/config.yaml",
    log:
        f"{LOGS}/aggregate.log",
    benchmark:
        f"{BENCHMARKS}/aggregate.tsv"
    conda:
        CONDA_ENV
    params:
        roles=list(MODEL_SIDECARS),
        config=config,
        support=SUPPORT.rows(),
        code=code_hash("aggregate"),
    script:
        "../scripts/aggregate.py"
