rule train:
    input:
        data=DATA,
        start=start_files,
    output:
        weights=FULL,
        meta=sidecar(FULL),
    log:
        f"{LOGS}/train/{{arch}}-seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/train/{{arch}}-seed{{seed}}.tsv"
    priority: 2  # long jobs first, so short attack jobs fill the tail of the run
    conda:
        CONDA_ENV
    threads: config["threads"]["train"]
    resources:
        gpu=GPUS,
    params:
        width=lambda w: config["archs"][w.arch]["width"],
        cfg=lambda w: train_params(w.arch),
        init=lambda w: start_of(w.arch, w.seed),
        device=config["device"],
        code=lambda w: code_hash("train", **merged(model_uses(w.arch))),
    script:
        "../scripts/train.py"
