from siblings.stages import similarity

similarity.run(data=snakemake.input.data, full_path=snakemake.input.full,
               sources=snakemake.params.sources, out=snakemake.output.table,
               params=snakemake.params.cfg, code_version=snakemake.params.code,
               log_file=snakemake.log[0], threads=snakemake.threads,
               device=snakemake.params.device)
