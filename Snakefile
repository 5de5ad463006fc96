# secret-moe: reproduce "Secret mixtures of experts inside your LLM" (arXiv 2512.18452).
# Table of contents; each stage lives in rules/<stage>.smk with its script in scripts/.
from snakemake.utils import min_version

min_version("9.0")


# A config given with --configfile replaces the default instead of being merged into it, so that
# e.g. config/paper.yaml does not inherit the default's offline model.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/tokenise.smk"
include: "rules/activations.smk"
include: "rules/gaussian.smk"
include: "rules/distill.smk"
include: "rules/aggregate.smk"
include: "rules/scan.smk"
include: "rules/figures.smk"


rule all:
    input:
        path("all_figures"),
