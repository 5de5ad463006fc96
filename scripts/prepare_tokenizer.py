"""Rule prepare_tokenizer: save the model's tokenizer locally, after checking the requested layers exist."""

from secret_moe.logs import log_to
from secret_moe.plan import layers_of
from secret_moe.steps.models import prepare_tokenizer

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
# Layers are only checked here (from the model config, no weights), so they come from the config rather
# than params: adding a layer must not re-materialise anything.
prepare_tokenizer(sm.params.spec, sm.wildcards.model, sm.output[0], layers_of(sm.config, sm.wildcards.model))
