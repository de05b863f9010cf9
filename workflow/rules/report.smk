rule report:
    input:
        benchmark=BENCHMARK,
        models=MODELS,
        correlations=CORRELATIONS,
        queries=QUERY_READINGS,
        support=SUPPORT_TABLE,
    output:
        **{
            name: report(
                f"reports/{NAME}/{name}.png",
                caption=f"../report/{name}.rst",
                category=category,
            )
            for name, category in FIGURES.items()
        },
        **{f"{name}_pdf": f"reports/{NAME}/{name}.pdf" for name in FIGURES},
        summary=f"reports/{NAME}/summary.md",
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCHMARKS}/report.tsv"
    conda:
        CONDA_ENV
    params:
        figures=list(FIGURES),
        code=code_hash("report"),
    script:
        "../scripts/report.py"
