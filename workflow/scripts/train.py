from siblings.stages import train

train.run(data=snakemake.input.data, out=snakemake.output.weights, arch=snakemake.wildcards.arch,
          width=snakemake.params.width, seed=int(snakemake.wildcards.seed),
          params=snakemake.params.cfg, code_version=snakemake.params.code,
          log_file=snakemake.log[0], threads=snakemake.threads,
          device=snakemake.params.device, init=snakemake.params.init)
