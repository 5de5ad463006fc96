"""Which rules of the workflow run where Snakemake runs, stated once.

`rules/common.smk` declares these as `localrules` (so a cluster executor never submits them); the Slurm
profile sets resources only for the other rules, and tests/workflow/test_rule_resources.py and
tests/workflow/test_slurm.py read this tuple. Every other rule does real work: it takes its memory (and
threads, where it uses more than one) from the config's `resources:` section and records a `benchmark:`.
"""

from __future__ import annotations

# the rules that draw figures, each calling the step function of its own name (steps/figures.py)
PLOT_RULES = (
    "plot_figure",
    "plot_layer_sweep",
    "plot_control",
    "plot_verdict",
    "plot_what_fvu_measures",
    "plot_ladder",
    "plot_scan",
)
LOCAL_RULES = (
    "collect_run",  # a file copy
    "aggregate_runs",  # the tables: seconds of CPU
    "profile_layers",  # one table joined with a few small ones
    *PLOT_RULES,
    "all_figures",
)
