"""Rule prepare_model: materialise the teacher LLM into a local folder."""

from secret_moe.logs import log_to
from secret_moe.steps import prepare_model

log_to(snakemake.log[0])  # noqa: F821 - injected by Snakemake
prepare_model(snakemake.params.spec, snakemake.wildcards.model, snakemake.output[0], snakemake.params.seed)  # noqa: F821
