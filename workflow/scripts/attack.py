from siblings import attack

attack.run(data=snakemake.input.data, target_path=snakemake.input.target,
           source_path=getattr(snakemake.input, "source", None) or None, out=snakemake.output.table,
           attack_id=snakemake.wildcards.attack, params=snakemake.params.cfg,
           role=snakemake.wildcards.role, source_id=snakemake.wildcards.source,
           code_version=snakemake.params.code, job_config_hash=snakemake.params.job_hash,
           log_file=snakemake.log[0], threads=snakemake.threads)
