"""Your own components: every module in this folder is imported with the registries.

A new architecture, dataset, compression method, attack, defense or similarity metric is
one file here that registers it (README, "Adding a component"); no library file changes.
The planner imports this package through ``siblings.config`` and every job through
``siblings.stages.runner``, so both see the same registries, and a job's code fingerprint
covers the entries it uses from here as from anywhere in the package.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
