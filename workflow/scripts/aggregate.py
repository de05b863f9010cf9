from siblings.stages import aggregate

aggregate.run(attack_tables=list(snakemake.input.tables),
              similarity_tables=list(snakemake.input.similarity),
              model_sidecars={role: list(snakemake.input[role]) for role in snakemake.params.roles},
              config=snakemake.params.config, benchmark_out=snakemake.output.benchmark,
              models_out=snakemake.output.models, similarity_out=snakemake.output.similarity,
              correlations_out=snakemake.output.correlations,
              queries_out=snakemake.output.queries, config_out=snakemake.output.config,
              support=snakemake.params.support, support_out=snakemake.output.support,
              log_file=snakemake.log[0])
