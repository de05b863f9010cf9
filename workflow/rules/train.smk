rule train:
    input:
        data=DATA,
    output:
        weights=FULL,
        meta=sidecar(FULL),
    log:
        LOGS + "/train/{arch}-seed{seed}.log",
    params:
        width=lambda w: config["archs"][w.arch]["width"],
        cfg=config["train"],
        code=code_hash("train"),
    threads: config["threads"]["train"]
    script:
        "../scripts/train.py"
