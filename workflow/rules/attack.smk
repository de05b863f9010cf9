rule attack:
    input:
        data=DATA,
        target=FULL.replace("{seed}", str(SEED_FULL)),
        source=source_model,
    output:
        table=ATTACK,
    log:
        f"{LOGS}/attack/{{arch}}-{{attack}}-{{role}}-{{source}}.log",
    params:
        cfg=lambda w: config["attacks"][w.attack],
        job_hash=lambda w: config_hash([config["attacks"][w.attack], w.role, w.source]),
        code=code_hash("attack"),
    threads: config["threads"]["attack"]
    conda:
        CONDA_ENV
    script:
        "../scripts/attack.py"
