"""Rule export_teacher: save layer ℓ's MLP as a standalone teacher (safetensors + config)."""

from secret_moe.logs import log_to
from secret_moe.steps.models import export_teacher

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
export_teacher(sm.input.model, sm.output[0], int(sm.wildcards.layer), sm.params.spec)
