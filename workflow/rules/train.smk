rule train:
    input:
        data=PATHS.data,
        start=lambda w: PLAN.start_files(w.arch, w.seed),
    output:
        weights=PATHS.full,
        meta=sidecar(PATHS.full),
    log:
        f"{PATHS.logs}/train/{{arch}}-seed{{seed}}.log",
    benchmark:
        f"{PATHS.benchmarks}/train/{{arch}}-seed{{seed}}.tsv"
    priority: 2  # long jobs first, so short attack jobs fill the tail of the run
    conda:
        CONDA_ENV
    threads: config["threads"]["train"]
    resources:
        gpu=GPUS,
    params:
        width=lambda w: config["archs"][w.arch]["width"],
        cfg=lambda w: PLAN.train_params(w.arch),
        init=lambda w: PLAN.start_of(w.arch, w.seed),
        device=config["device"],
        code=lambda w: PLAN.code("train", PLAN.model_uses(w.arch)),
    script:
        "../scripts/train.py"
