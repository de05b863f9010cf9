# siblings: how much does publishing an efficient sibling help attack the full model?
# This file is the table of contents; each stage lives in workflow/rules/<stage>.smk and
# calls one function of the `siblings` package (src/siblings/<stage>.py).
from snakemake.utils import min_version

min_version("9.0")

# Without --configfile this is the default laptop run. With --configfile the named file
# replaces it whole, instead of Snakemake's deep merge (which would mix architecture lists).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/compress.smk"
include: "workflow/rules/defend.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/similarity.smk"
include: "workflow/rules/attack.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/report.smk"


# On a cluster these run on the submitting node: they only read and write tables.
localrules:
    all,
    aggregate,
    report,


rule all:
    input:
        REPORT_FILES,
    default_target: True
