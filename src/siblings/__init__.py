"""siblings: does publishing an efficient on-device sibling make the full model easier to attack?

One module per workflow stage (data, train, compress, attack, aggregate, report), each
with a ``run`` function that a Snakemake rule calls, plus the registries they share.
"""

__version__ = "0.1.0"
