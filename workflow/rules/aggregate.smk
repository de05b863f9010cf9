rule aggregate:
    input:
        tables=ATTACK_TABLES,
        **{role: paths for role, paths in MODEL_SIDECARS.items()},
    output:
        benchmark=BENCHMARK,
        models=MODELS,
        config=f"results/{NAME}/config.yaml",
    log:
        f"{LOGS}/aggregate.log",
    params:
        roles=list(MODEL_SIDECARS),
        config=config,
        code=code_hash("aggregate"),
    conda:
        CONDA_ENV
    script:
        "../scripts/aggregate.py"
