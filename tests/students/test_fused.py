"""The fused CPU kernels compute what today's PyTorch path computes, reproducibly, and fall back without a compiler.

Tolerance: outputs and gradients agree elementwise within rtol 1e-4 plus 1e-5 of the tensor's largest
magnitude (float32 rounding of sums taken in another order: expert-major instead of per token, erf from libm
instead of ATen's vectorised one); measured differences are below 1e-6 of the largest magnitude.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from secret_moe.batches import ActivationBatches, output_variance
from secret_moe.store import open_store
from secret_moe.students import fused, sparse
from secret_moe.students.moe import MoEConfig, MoEStudent
from secret_moe.students.optim import make_optimizer
from secret_moe.train import TrainConfig, fit

needs_kernels = pytest.mark.skipif(fused.library() is None, reason="the fused kernels could not be built here")


def close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale + 1e-12, msg=what)


def both_paths(config: MoEConfig, batch: int, monkeypatch: pytest.MonkeyPatch, steps: int = 1):
    """Outputs and gradients of the same student (same weights, same batch) on each path, after `steps`
    Adam steps on each (so that later steps start from each path's own weights)."""
    torch.manual_seed(0)
    student = MoEStudent(config)
    with torch.no_grad():
        student.b_out.normal_()  # break the zero init so that its gradient path is checked too
    x, y = torch.randn(batch, config.d_model), torch.randn(batch, config.d_model)
    results = {}
    for enabled in (False, True):
        monkeypatch.setattr(fused, "ENABLED", enabled)
        model = copy.deepcopy(student)
        optimizer = make_optimizer(model, 1e-3)
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            out = model(x)
            torch.nn.functional.mse_loss(out, y).backward()
            grads = {name: p.grad.clone() for name, p in model.named_parameters()}
            optimizer.step()
        results[enabled] = out.detach(), grads, model
    return results[False], results[True]


SHAPES = [
    pytest.param({"d_model": 640, "shared": 32, "experts": 4096, "k": 32}, 64, id="default-m4096"),
    pytest.param({"d_model": 640, "shared": 32, "experts": 1024, "k": 32}, 64, id="default-m1024"),
    pytest.param({"d_model": 13, "shared": 3, "experts": 49, "k": 5}, 11, id="odd"),
    pytest.param({"d_model": 7, "shared": 0, "experts": 25, "k": 3, "expert_width": 2}, 9, id="odd-width2"),
]


@needs_kernels
@pytest.mark.parametrize("router", ["lowrank", "fullrank", "product_key"])
@pytest.mark.parametrize(("shape", "batch"), SHAPES)
def test_same_outputs_and_gradients_as_the_pytorch_path(router, shape, batch, monkeypatch):
    config = MoEConfig(router=router, rank=min(128, 2 * (shape["d_model"] // 2)), **shape)
    (out_torch, grads_torch, _), (out_fused, grads_fused, _) = both_paths(config, batch, monkeypatch)
    close(out_fused, out_torch, "output")
    assert grads_fused.keys() == grads_torch.keys()
    for name, grad in grads_torch.items():
        close(grads_fused[name], grad, f"gradient of {name}")


@needs_kernels
def test_fused_path_is_taken_and_bit_reproducible(monkeypatch):
    """Two fresh runs of three training steps give the same bytes; the fused kernels are what ran."""
    config = MoEConfig(d_model=32, shared=4, experts=100, k=6, router="lowrank", rank=8)
    calls = []
    real = fused.sort_pairs
    monkeypatch.setattr(fused, "sort_pairs", lambda *a: calls.append(1) or real(*a))
    (_, _, model_a), (_, _, model_b) = (both_paths(config, 50, monkeypatch, steps=3)[1] for _ in range(2))
    assert len(calls) == 6  # one counting sort per step (router and experts share it), per run
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@needs_kernels
def test_threads_split_the_rows_and_agree(monkeypatch):
    """With 2 threads the experts are split in two ranges whose token-side outputs are added in order."""
    config = MoEConfig(d_model=24, shared=0, experts=300, k=8, router="fullrank")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        (_, grads_torch, _), (out_1, grads_1, _) = both_paths(config, 40, monkeypatch)
        torch.set_num_threads(2)
        _, (out_2, grads_2, _) = both_paths(config, 40, monkeypatch)
        _, (out_2b, grads_2b, _) = both_paths(config, 40, monkeypatch)
    finally:
        torch.set_num_threads(threads)
    close(out_2, out_1, "output")
    assert torch.equal(out_2, out_2b)
    for name in grads_1:
        close(grads_2[name], grads_1[name], name)
        assert torch.equal(grads_2[name], grads_2b[name]), name


@needs_kernels
def test_counting_sort_is_a_stable_sort():
    torch.manual_seed(3)
    idx = torch.randint(0, 40, (17, 5))  # rows 40.. never picked (rows = 45), repeats within the batch
    order, token, row, offsets = fused.sort_pairs(idx, 45)
    expected_row, expected_order = torch.sort(idx.reshape(-1), stable=True)
    assert torch.equal(order, expected_order) and torch.equal(row, expected_row)
    assert torch.equal(token, expected_order // 5)
    assert torch.equal(
        offsets, torch.cat([torch.zeros(1, dtype=torch.int64), torch.bincount(row, minlength=45).cumsum(0)])
    )
    with pytest.raises(IndexError):
        fused.sort_pairs(idx, 30)


@needs_kernels
def test_router_backward_matches_the_pytorch_path(monkeypatch):
    torch.manual_seed(4)
    q, w, b = (torch.randn(*shape, requires_grad=True) for shape in ((19, 6), (70, 6), (70,)))
    grads = {}
    for enabled in (False, True):
        monkeypatch.setattr(fused, "ENABLED", enabled)
        scores, pairs = sparse.topk_linear(q, w, b, 4)
        (scores * torch.arange(1.0, 5.0)).sum().backward()
        grads[enabled] = [t.grad.clone() for t in (q, w, b)]
        for t in (q, w, b):
            t.grad = None
    for name, a, e in zip("qwb", grads[True], grads[False], strict=True):
        close(a, e, name)


@needs_kernels
def test_training_gives_the_same_fvus(tmp_path, make_store, monkeypatch):
    """Six epochs of a small MoE on a GELU teacher's outputs: the validation FVUs of both paths agree to 1e-6."""
    rng = np.random.default_rng(0)
    d = 16
    w1, w2 = rng.standard_normal((d, 32)).astype(np.float32), rng.standard_normal((32, d)).astype(np.float32) / 4
    stores = []
    for name, rows in (("train", 2048), ("val", 512)):
        x = rng.standard_normal((rows, d)).astype(np.float32)
        y = torch.nn.functional.gelu(torch.from_numpy(x @ w1)).numpy() @ w2
        stores.append(open_store(make_store(tmp_path / f"{name}.zarr", x, y, chunk_rows=256)))
    train, val = (
        ActivationBatches(g, 128, shuffle=s, seed=0, group_chunks=2, in_memory=True, device="cpu")
        for g, s in zip(stores, (True, False), strict=True)
    )
    variance = output_variance(val)
    fvus = {}
    for enabled in (False, True):
        monkeypatch.setattr(fused, "ENABLED", enabled)
        torch.manual_seed(0)
        student = MoEStudent(MoEConfig(d_model=d, shared=4, experts=64, k=4, router="lowrank", rank=8))
        result = fit(student, train, val, TrainConfig(6, 1e-2, f"fused={enabled}"), variance)
        fvus[enabled] = np.array([h["val_fvu"] for h in result["history"]])
    assert fvus[True][-1] < 0.7 * fvus[True][0]  # it learns
    np.testing.assert_allclose(fvus[True], fvus[False], rtol=1e-6)


def test_falls_back_with_one_log_line_without_a_compiler(tmp_path):
    """No compiler (CXX points nowhere, empty cache): one warning, then today's path gives the same output."""
    script = textwrap.dedent(
        """
        import logging, torch
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
        from secret_moe.students import fused
        from secret_moe.students.moe import MoEConfig, MoEStudent
        torch.manual_seed(0)
        student = MoEStudent(MoEConfig(d_model=8, shared=2, experts=20, k=3, router="lowrank", rank=4))
        x = torch.randn(5, 8)
        for _ in range(3):
            student(x).sum().backward()
        assert fused.library() is None
        print(repr(student(x).sum().item()))
        """
    )
    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "fused CPU kernels unavailable" in line]
    assert len(warnings) == 1 and warnings[0].startswith("WARNING"), proc.stderr
    torch.manual_seed(0)
    student = MoEStudent(MoEConfig(d_model=8, shared=2, experts=20, k=3, router="lowrank", rank=4))
    x = torch.randn(5, 8)
    assert float(proc.stdout.split()[-1]) == pytest.approx(student(x).sum().item(), rel=1e-5)


@needs_kernels
@pytest.mark.parametrize("cols", [1024, 4096, 1003, 40, 33])
def test_topk_equals_torch_topk(cols):
    """Values and indices of `torch.topk` (distinct scores); with ties, the same values, lower columns first."""
    torch.manual_seed(5)
    k = 32 if cols >= 32 else 7
    scores = torch.randperm(50 * cols).float().view(50, cols) / cols  # distinct
    values, indices = torch.empty(50, k), torch.empty(50, k, dtype=torch.int64)
    fused.topk(scores, k, values, indices)
    expected = torch.topk(scores, k)
    assert torch.equal(values, expected.values) and torch.equal(indices, expected.indices)
    ties = torch.randint(0, 4, (50, cols)).float()
    fused.topk(ties, k, values, indices)
    assert torch.equal(values, torch.topk(ties, k).values)
    assert torch.equal(ties.gather(1, indices), values)
    for row, chosen in zip(ties, indices, strict=True):  # among equal scores the lowest columns are kept, in order
        for value in row[chosen].unique():
            assert torch.equal(
                chosen[row[chosen] == value], (row == value).nonzero().flatten()[: int((row[chosen] == value).sum())]
            )
