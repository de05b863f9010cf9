"""siblings: does publishing an efficient on-device sibling make the full model easier to attack?

``siblings.plan`` decides a config's jobs; ``siblings.stages`` holds one module per workflow
stage, each with a ``run`` function that a Snakemake rule calls; the rest is the library
they share: the registries and their components, each declaring its config knobs.
``siblings`` on the command line: ``siblings.cli``. docs/layout.md has every module.
"""

__version__ = "0.1.0"
