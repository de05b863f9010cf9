from siblings.stages import defend

defend.run(data=snakemake.input.data, full=snakemake.input.full, sibling=snakemake.input.sibling,
           out=snakemake.output.weights, defense_id=snakemake.wildcards.defense,
           params=snakemake.params.cfg, seed=snakemake.params.seed,
           code_version=snakemake.params.code, log_file=snakemake.log[0],
           threads=snakemake.threads,
           device=snakemake.params.device)
