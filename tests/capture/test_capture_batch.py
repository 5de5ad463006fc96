"""`capture_batch` captures exactly the MLP input and output of one layer, and stops the forward pass there.

The reference is computed independently of the package: an unmodified full forward pass with
`output_hidden_states`, hooks on the layer's *pre-MLP norm* (not on the MLP), and the residual stream
that the architecture adds the MLP output to.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from secret_moe.capture import capture_batch
from secret_moe.testing import TINY_CONFIGS

ARCHS = sorted(TINY_CONFIGS)
LAYER = 1  # a middle layer of the three: neither the first nor the last


def decoder_stack(model: nn.Module, arch: str) -> nn.ModuleList:
    """The decoder layers by their documented attribute paths (not the package's structural search)."""
    return {
        "gpt2": lambda: model.transformer.h,
        "gpt_neox": lambda: model.gpt_neox.layers,
        "llama": lambda: model.model.layers,
        "gemma3_text": lambda: model.model.layers,
    }[arch]()


PRE_MLP_NORM = {
    "gpt2": "ln_2",
    "gpt_neox": "post_attention_layernorm",
    "llama": "post_attention_layernorm",
    "gemma3_text": "pre_feedforward_layernorm",
}


def padded_batch(vocab: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Three sequences of lengths 11, 7 and 4, right-padded with id 0."""
    lengths = [11, 7, 4]
    ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(lengths):
        ids[row, :length] = torch.randint(3, vocab, (length,), generator=generator)
        mask[row, :length] = 1
    return ids, mask


def reference_io(model: nn.Module, arch: str, ids: torch.Tensor, mask: torch.Tensor):
    """(x, y) of layer LAYER's MLP from a full, unhooked-at-the-MLP forward pass."""
    block = decoder_stack(model, arch)[LAYER]
    seen = {}

    def norm_hook(module, args, output):
        seen["residual"], seen["x"] = args[0].detach().clone(), output.detach().clone()

    def attention_hook(module, args, output):
        seen["attention"] = output[0].detach().clone()

    handles = [getattr(block, PRE_MLP_NORM[arch]).register_forward_hook(norm_hook)]
    if arch == "gpt_neox":
        handles.append(block.attention.register_forward_hook(attention_hook))
    try:
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, use_cache=False, output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    before, after = out.hidden_states[LAYER], out.hidden_states[LAYER + 1]
    return seen, before, after, block


@pytest.mark.parametrize("arch", ARCHS)
def test_capture_batch_equals_a_manual_forward(tiny_models, arch):
    model = tiny_models[arch]
    ids, mask = padded_batch(model.config.vocab_size, torch.Generator().manual_seed(1))
    x, y = capture_batch(model, LAYER, ids, mask)
    d = model.config.hidden_size
    assert x.shape == y.shape == (*ids.shape, d)

    seen, before, after, block = reference_io(model, arch, ids, mask)
    keep = mask.bool()
    # x: the output of the layer's own pre-MLP norm in a normal forward pass
    torch.testing.assert_close(x[keep], seen["x"][keep], rtol=0, atol=1e-6)
    # y: what the layer adds to the residual stream
    if arch in ("gpt2", "llama"):  # h_out = r + mlp(norm(r))
        torch.testing.assert_close(y[keep], (after - seen["residual"])[keep], rtol=1e-4, atol=1e-5)
    elif arch == "gemma3_text":  # h_out = r + post_feedforward_layernorm(mlp(pre_feedforward_layernorm(r)))
        torch.testing.assert_close(
            block.post_feedforward_layernorm(y)[keep], (after - seen["residual"])[keep], rtol=1e-4, atol=1e-5
        )
    else:  # gpt_neox, parallel residual: h_out = h + attn(ln1(h)) + mlp(ln2(h))
        assert model.config.use_parallel_residual
        torch.testing.assert_close(x[keep], block.post_attention_layernorm(before)[keep], rtol=0, atol=1e-6)
        torch.testing.assert_close(y[keep], (after - before - seen["attention"])[keep], rtol=1e-4, atol=1e-5)
    # the MLP output is not trivially zero or equal to its input
    assert y[keep].abs().mean() > 1e-3
    assert not torch.allclose(x, y)


@pytest.mark.parametrize("arch", ARCHS)
def test_later_layers_are_not_computed(tiny_models, arch):
    model = tiny_models[arch]
    layers = decoder_stack(model, arch)
    ids, mask = padded_batch(model.config.vocab_size, torch.Generator().manual_seed(2))
    calls = {"this": 0, "next": 0, "last": 0, "head": 0}

    def counter(name):
        def hook(*_):
            calls[name] += 1

        return hook

    handles = [
        layers[LAYER].register_forward_hook(counter("this")),
        layers[LAYER + 1].register_forward_pre_hook(counter("next")),
        layers[-1].register_forward_pre_hook(counter("last")),
        model.lm_head.register_forward_pre_hook(counter("head")),
    ]
    try:
        capture_batch(model, LAYER, ids, mask)
    finally:
        for handle in handles:
            handle.remove()
    # the capturing layer never returns (the forward stops inside its MLP), and nothing after it starts
    assert calls == {"this": 0, "next": 0, "last": 0, "head": 0}

    # sanity of the probe itself: a plain forward does fire the hook on the next layer
    handle = layers[LAYER + 1].register_forward_pre_hook(counter("next"))
    try:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        handle.remove()
    assert calls["next"] == 1


@pytest.mark.parametrize("arch", ARCHS)
def test_capture_batch_leaves_no_hook_behind(tiny_models, arch):
    model = tiny_models[arch]
    ids, mask = padded_batch(model.config.vocab_size, torch.Generator().manual_seed(3))
    hooks_before = sum(len(m._forward_hooks) for m in model.modules())
    capture_batch(model, LAYER, ids, mask)
    assert sum(len(m._forward_hooks) for m in model.modules()) == hooks_before
    with torch.no_grad():  # the model still runs to the end
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    assert logits.shape == (*ids.shape, model.config.vocab_size)


def test_first_and_last_layer_can_be_captured(tiny_models):
    model = tiny_models["llama"]
    ids, mask = padded_batch(model.config.vocab_size, torch.Generator().manual_seed(4))
    last = model.config.num_hidden_layers - 1
    x0, _ = capture_batch(model, 0, ids, mask)
    x_last, _ = capture_batch(model, last, ids, mask)
    assert x0.shape == x_last.shape
    assert not torch.allclose(x0, x_last)


@pytest.mark.cuda
@pytest.mark.parametrize("arch", ARCHS)
def test_capture_batch_on_cuda_equals_cpu(tiny_models, arch):
    import copy

    model = tiny_models[arch]
    ids, mask = padded_batch(model.config.vocab_size, torch.Generator().manual_seed(5))
    x_cpu, y_cpu = capture_batch(model, LAYER, ids, mask)
    gpu = copy.deepcopy(model).cuda()
    x_gpu, y_gpu = capture_batch(gpu, LAYER, ids.cuda(), mask.cuda())
    keep = mask.bool()
    torch.testing.assert_close(x_gpu.cpu()[keep], x_cpu[keep], rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(y_gpu.cpu()[keep], y_cpu[keep], rtol=1e-3, atol=1e-4)
