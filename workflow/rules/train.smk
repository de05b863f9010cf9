rule train:
    input:
        data=DATA,
    output:
        weights=FULL,
        meta=sidecar(FULL),
    log:
        f"{LOGS}/train/{{arch}}-seed{{seed}}.log",
    params:
        width=lambda w: config["archs"][w.arch]["width"],
        cfg=lambda w: train_params(w.arch),
        device=config["device"],
        code=code_hash("train"),
    threads: config["threads"]["train"]
    priority: 2  # long jobs first, so short attack jobs fill the tail of the run
    conda:
        CONDA_ENV
    script:
        "../scripts/train.py"
