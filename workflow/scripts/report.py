from siblings import report

report.run(benchmark=snakemake.input.benchmark, models=snakemake.input.models,
           figure_out=snakemake.output.figure, summary_out=snakemake.output.summary,
           log_file=snakemake.log[0])
