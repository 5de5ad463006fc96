"""Rules capture_activations and capture_layers: stream the MLP inputs and outputs of one layer, or of several in
one forward pass, into a Zarr store per layer (resumable)."""

import torch

from secret_moe.logs import log_to
from secret_moe.steps.activations import capture_layers

sm = snakemake  # noqa: F821 - injected by Snakemake
log_to(sm.log[0])
torch.set_num_threads(sm.threads)
capture_layers(
    sm.input.model,
    sm.input.tokenizer,
    sm.input.tokens,
    sm.params.stores,
    model_spec=sm.params.spec,
    settings=sm.params.capture,
    seed=sm.params.seed,
    device=sm.params.device,
)
