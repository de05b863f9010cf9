rule attack:
    input:
        data=DATA,
        target=FULL.replace("{seed}", str(SEED_FULL)),
        sources=source_models,
    output:
        table=ATTACK,
    log:
        f"{LOGS}/attack/{{arch}}-{{attack}}-{{role}}.log",
    benchmark:
        f"{BENCHMARKS}/attack/{{arch}}-{{attack}}-{{role}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]["attack"]
    resources:
        gpu=GPUS,
    params:
        cfg=lambda w: config["attacks"][w.attack],
        sources=attack_sources,
        device=config["device"],
        code=attack_code,
    script:
        "../scripts/attack.py"
