"""Rule fit_gaussian: exact mean and covariance of the train MLP inputs (float64, streamed)."""

from secret_moe.logs import log_to
from secret_moe.steps.gaussian import fit_gaussian

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
fit_gaussian(sm.input[0], sm.output[0], sm.params.block_rows)
