"""One function per workflow rule: read inputs, call the science modules, write outputs with provenance.

Rule scripts in `scripts/` are thin wrappers that pass Snakemake's named inputs, outputs and params here, each
importing its step from the module that defines it (`from secret_moe.steps.figures import plot_verdict`). Each
stage's functions live in a module of their own, named after its rules file (`tokens.py`: rules/tokenise.smk;
`collect.py`: rules/distill.smk's file copy, without the training's torch import); importing one loads only that
stage's libraries, so a distillation job does not pay for importing transformers.
"""
