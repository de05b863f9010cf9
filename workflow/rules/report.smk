from siblings.figures import FIGURES


rule report:
    input:
        benchmark=PATHS.table("benchmark"),
        models=PATHS.table("models"),
        correlations=PATHS.table("correlations"),
        queries=PATHS.table("queries"),
        support=PATHS.table("support"),
    output:
        **{
            name: report(
                PATHS.report(f"{name}.png"),
                caption=f"../report/{name}.rst",
                category=category,
            )
            for name, category in FIGURES.items()
        },
        **{f"{name}_pdf": PATHS.report(f"{name}.pdf") for name in FIGURES},
        summary=PATHS.report("summary.md"),
    log:
        f"{PATHS.logs}/report.log",
    benchmark:
        f"{PATHS.benchmarks}/report.tsv"
    conda:
        CONDA_ENV
    params:
        figures=list(FIGURES),
        code=PLAN.code("report"),
    script:
        "../scripts/report.py"
