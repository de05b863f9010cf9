from siblings.stages import data

cfg = snakemake.params.cfg
data.run(out=snakemake.output.data, name=cfg["name"], root=cfg["root"], download=cfg["download"],
         calib_size=cfg["calib_size"], seed=cfg["split_seed"], train_subset=cfg["train_subset"],
         test_subset=cfg["test_subset"], image_size=cfg.get("image_size"),
         code_version=snakemake.params.code,
         log_file=snakemake.log[0])
