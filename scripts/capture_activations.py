"""Rule capture_activations: stream layer ℓ's MLP inputs and outputs into a Zarr store (resumable)."""

import torch

from secret_moe.logs import log_to
from secret_moe.steps import capture_activations

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
capture_activations(
    sm.input.model,
    sm.input.tokenizer,
    sm.input.tokens,
    sm.output[0],
    layer=int(sm.wildcards.layer),
    model_spec=sm.params.spec,
    settings=sm.params.capture,
    seed=sm.params.seed,
    device=sm.params.device,
)
