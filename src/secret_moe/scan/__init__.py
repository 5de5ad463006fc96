"""`secret-moe scan MODEL` (docs/scan.md): which layers of a model hide a mixture of experts.

The command (`secret_moe.cli`) resolves MODEL and the budget without loading weights (`target`, `budget`), writes a
complete config, estimates its cost (`estimate`) and runs Snakemake on it, summarising the finished jobs
(`progress`); the workflow's rules/scan.smk draws each layer's verdict beside statistics of its inputs
(`profile`, `figure`).
"""
