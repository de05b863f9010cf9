from siblings.stages import report

report.run(tables={name: snakemake.input[name] for name in
                   ("benchmark", "models", "correlations", "queries", "support")},
           figures={name: snakemake.output[name] for name in snakemake.params.figures},
           summary_out=snakemake.output.summary, log_file=snakemake.log[0])
