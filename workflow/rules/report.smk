rule report:
    input:
        benchmark=BENCHMARK,
        models=MODELS,
    output:
        figure=report(
            f"reports/{NAME}/transfer_success.png",
            caption="../report/transfer_success.rst",
            category="Transfer",
        ),
        summary=f"reports/{NAME}/summary.md",
    log:
        f"{LOGS}/report.log",
    params:
        code=code_hash("report"),
    script:
        "../scripts/report.py"
