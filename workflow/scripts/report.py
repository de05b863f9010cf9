from siblings.stages import report

report.run(benchmark=snakemake.input.benchmark, models=snakemake.input.models,
           correlations=snakemake.input.correlations, queries=snakemake.input.queries,
           support=snakemake.input.support,
           outputs=dict(snakemake.output.items()),
           log_file=snakemake.log[0])
