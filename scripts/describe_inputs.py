"""Rule describe_inputs: statistics of a layer's train inputs beside those of their Gaussian twin (docs/scan.md)."""

from secret_moe.logs import log_to
from secret_moe.steps.scan import describe_inputs

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
describe_inputs(
    sm.input.real,
    sm.input.twin,
    sm.output[0],
    projections=sm.params.projections,
    block_rows=sm.params.block_rows,
    seed=sm.params.seed,
)
