from siblings.stages import compress

compress.run(data=snakemake.input.data, full=snakemake.input.full, out=snakemake.output.weights,
             compression_id=snakemake.wildcards.compression, params=snakemake.params.cfg,
             seed=snakemake.params.seed, code_version=snakemake.params.code,
             log_file=snakemake.log[0], threads=snakemake.threads,
             device=snakemake.params.device)
