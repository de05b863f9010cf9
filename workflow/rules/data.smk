rule data:
    output:
        data=DATA,
        meta=sidecar(DATA),
    log:
        f"{LOGS}/data.log",
    params:
        cfg=config["dataset"],
        code=code_hash("data"),
    script:
        "../scripts/data.py"
