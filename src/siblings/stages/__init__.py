"""The workflow's stages: one module per Snakemake rule, each with one ``run`` function.

A stage reads artifacts, calls the library (``siblings.*``) and writes artifacts; the
library never imports a stage. Every stage starts with :func:`runner.stage`, which sets
up its log, threads, seed and device and loads the data splits.
"""
