from siblings.stages import extract

extract.run(data=snakemake.input.data, victim=snakemake.input.victim,
            out=snakemake.output.weights, params=snakemake.params.cfg, seed=snakemake.params.seed,
            code_version=snakemake.params.code, log_file=snakemake.log[0],
            threads=snakemake.threads,
            device=snakemake.params.device)
