"""Rule prepare_model: materialise the teacher LLM into a local folder."""

from secret_moe.logs import log_to
from secret_moe.plan import layers_of
from secret_moe.steps.models import prepare_model

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
# The requested layers are only checked against the model (before loading weights), so they are read
# from the config rather than passed as params: adding a layer must not re-materialise the model.
layers = layers_of(sm.config, sm.wildcards.model)
prepare_model(sm.params.spec, sm.wildcards.model, sm.output[0], layers, sm.params.seed)
