rule compress:
    input:
        data=DATA,
        full=FULL.replace("{seed}", str(SEED_FULL)),
    output:
        weights=SIBLING,
        meta=sidecar(SIBLING),
    log:
        f"{LOGS}/compress/{{arch}}-{{compression}}.log",
    benchmark:
        f"{BENCHMARKS}/compress/{{arch}}-{{compression}}.tsv"
    priority: 1  # long jobs first, so short attack jobs fill the tail of the run
    conda:
        CONDA_ENV
    threads: config["threads"]["compress"]
    resources:
        gpu=GPUS,
    params:
        cfg=lambda w: config["compressions"][w.compression],
        seed=SEED_FULL,
        device=config["device"],
        code=lambda w: code_hash("compress", **merged(model_uses(w.arch, "sibling", w.compression))),
    script:
        "../scripts/compress.py"
