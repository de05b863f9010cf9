rule attack:
    input:
        data=PATHS.data,
        target=TARGET,
        sources=lambda w: PLAN.source_models(w.arch, w.attack, w.role),
    output:
        table=PATHS.attack,
    log:
        f"{PATHS.logs}/attack/{{arch}}-{{attack}}-{{role}}.log",
    benchmark:
        f"{PATHS.benchmarks}/attack/{{arch}}-{{attack}}-{{role}}.tsv"
    conda:
        CONDA_ENV
    threads: config["threads"]["attack"]
    resources:
        gpu=GPUS,
    params:
        cfg=lambda w: config["attacks"][w.attack],
        sources=lambda w: PLAN.attack_sources(w.arch, w.attack, w.role),
        device=config["device"],
        code=lambda w: PLAN.attack_code(w.arch, w.attack, w.role),
    script:
        "../scripts/attack.py"
