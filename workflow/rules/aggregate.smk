rule aggregate:
    input:
        tables=ATTACK_TABLES,
        similarity=SIMILARITY_TABLES,
        **{role: paths for role, paths in MODEL_SIDECARS.items()},
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
        f"{BENCHMARKS}/aggregate.tsv",
    params:
        roles=list(MODEL_SIDECARS),
        config=config,
        support=SUPPORT.rows(),
        code=code_hash("aggregate"),
    conda:
        CONDA_ENV
    script:
        "../scripts/aggregate.py"
