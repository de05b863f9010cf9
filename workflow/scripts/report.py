from siblings import report

report.run(benchmark=snakemake.input.benchmark, models=snakemake.input.models,
           figure_out=snakemake.output.figure,
           efficiency_out=snakemake.output.efficiency,
           query_out=snakemake.output.queries, summary_out=snakemake.output.summary,
           log_file=snakemake.log[0])
