from siblings.stages import attack

attack.run(data=snakemake.input.data, target_path=snakemake.input.target,
           role=snakemake.wildcards.role, sources=snakemake.params.sources,
           out=snakemake.output.table, attack_id=snakemake.wildcards.attack,
           params=snakemake.params.cfg, code_version=snakemake.params.code,
           log_file=snakemake.log[0], threads=snakemake.threads,
           device=snakemake.params.device)
