"""Our fast MoE student computes the paper's function: same outputs and gradients as the plain baseline."""

from __future__ import annotations

import pytest
import torch

from secret_moe.students import fused, sparse
from secret_moe.students.baseline import PaperStudent, paper_from_student, student_grads
from secret_moe.students.moe import MoEConfig, MoEStudent
from secret_moe.students.optim import make_optimizer


def _loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.mse_loss(model(x), y)


@pytest.mark.parametrize("router", ["lowrank", "fullrank"])
@pytest.mark.parametrize("experts", [64, 5000])
@pytest.mark.parametrize("shared", [0, 6])
def test_same_outputs_and_gradients(router: str, experts: int, shared: int) -> None:
    torch.manual_seed(0)
    config = MoEConfig(d_model=24, shared=shared, experts=experts, k=8, router=router, rank=12)
    ours = MoEStudent(config)
    paper = paper_from_student(ours)
    x, y = torch.randn(40, 24), torch.randn(40, 24)
    out_ours, out_paper = ours(x), paper(x)
    torch.testing.assert_close(out_ours, out_paper, rtol=1e-5, atol=1e-6)
    _loss(ours, x, y).backward()
    _loss(paper, x, y).backward()
    expected = student_grads(paper, ours)
    for name, param in ours.named_parameters():
        assert param.grad is not None, name
        torch.testing.assert_close(param.grad, expected[name], rtol=1e-4, atol=1e-7, msg=name)


def test_same_selection_and_scores() -> None:
    torch.manual_seed(1)
    config = MoEConfig(d_model=16, shared=4, experts=300, k=5, router="lowrank", rank=8)
    ours = MoEStudent(config)
    paper = paper_from_student(ours)
    x = torch.randn(17, 16)
    scores, idx = ours.router(x)
    scores_ref, idx_ref = paper.moe.router(x)
    assert torch.equal(idx, idx_ref)
    torch.testing.assert_close(scores, scores_ref)


def test_blocked_scoring_matches_one_block(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(2)
    q, w, b = torch.randn(50, 8), torch.randn(1000, 8), torch.randn(1000)
    whole = sparse.topk_scores(q, w, b, 7)
    assert sparse.score_block_rows(50, 1000) == 50  # one block
    monkeypatch.setattr(sparse, "SCORE_BLOCK_ELEMENTS", 3000)
    monkeypatch.setattr(sparse, "MIN_SCORE_BLOCK_ROWS", 1)
    assert sparse.score_block_rows(50, 1000) == 3  # 17 blocks, the last one partial
    blocked = sparse.topk_scores(q, w, b, 7)
    assert torch.equal(whole[1], blocked[1])
    torch.testing.assert_close(whole[0], blocked[0])


def test_fallback_kernels_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(3)
    x, w, idx = torch.randn(9, 5), torch.randn(30, 5), torch.randint(0, 30, (9, 4))
    fast = sparse.gather_dot(x, w, sparse.Pairs(idx, 30))
    monkeypatch.setattr(sparse, "USE_ATEN_KERNELS", False)
    torch.testing.assert_close(sparse.gather_dot(x, w, sparse.Pairs(idx, 30)), fast)
    torch.testing.assert_close(fast, torch.einsum("bd,bkd->bk", x, w[idx]))


def test_expert_width_matches_reference() -> None:
    """Experts of width e > 1 (no paper baseline): compare with a direct (B, k·e, d) gather."""
    torch.manual_seed(4)
    config = MoEConfig(d_model=12, shared=0, experts=2500, k=3, router="lowrank", rank=6, expert_width=2)
    ours = MoEStudent(config)
    x = torch.randn(10, 12)
    scores, idx = ours.router(x)
    neurons = ours.neurons_of(idx)
    gates = torch.softmax(scores, -1).repeat_interleave(2, dim=1)
    pre = torch.einsum("bd,bnd->bn", x, ours.w_in[neurons]) + ours.b_in[neurons]
    ref = torch.einsum("bn,bnd->bd", torch.nn.functional.gelu(pre) * gates, ours.w_out[neurons]) + ours.b_out
    torch.testing.assert_close(ours(x), ref, rtol=1e-5, atol=1e-6)


def test_gradcheck_sparse_functions() -> None:
    torch.manual_seed(5)
    opts = {"dtype": torch.float64, "requires_grad": True}
    q, w, b = torch.randn(6, 4, **opts), torch.randn(20, 4, **opts), torch.randn(20, **opts)
    assert torch.autograd.gradcheck(lambda q, w, b: sparse.topk_linear(q, w, b, 3)[0], (q, w, b))
    assert torch.autograd.gradcheck(lambda q, w: sparse.topk_linear(q, w, None, 3)[0], (q, w))
    pairs = sparse.Pairs(torch.randint(0, 20, (6, 3)), 20)
    x = torch.randn(6, 4, **opts)
    assert torch.autograd.gradcheck(lambda x, w: sparse.GatherDot.apply(x, w, pairs), (x, w))
    c = torch.randn(6, 3, **opts)
    assert torch.autograd.gradcheck(lambda w, c: sparse.BagSum.apply(pairs, w, c), (w, c))


def test_sparse_products_match_dense_references() -> None:
    """The row-major products against plain gathers, with repeated rows, rows nobody picked and an empty row."""
    torch.manual_seed(9)
    x, w, c = torch.randn(11, 7), torch.randn(40, 7), torch.randn(11, 5)
    idx = torch.randint(0, 30, (11, 5))  # rows 30-39 are never picked; several rows picked more than once
    pairs = sparse.Pairs(idx, 40)
    torch.testing.assert_close(sparse.gather_dot(x, w, pairs), torch.einsum("bd,bkd->bk", x, w[idx]))
    torch.testing.assert_close(sparse.bag_sum(pairs, w, c), torch.einsum("bk,bkd->bd", c, w[idx]))
    expected = torch.zeros(40, 7).index_add_(0, idx.reshape(-1), (c[:, :, None] * x[:, None, :]).reshape(-1, 7))
    torch.testing.assert_close(sparse.scatter_outer(pairs, c, x), expected)
    assert pairs.by_row() is pairs.by_row()  # sorted once, then shared


def product_key_reference(student: MoEStudent, x_BD: torch.Tensor) -> torch.Tensor:
    """The product-key MoE written as a plain loop over samples: every one of the m = side² experts scored
    (score of expert a·side + b = q_a·keys_a[a] + q_b·keys_b[b]), the top k kept, each expert's neuron
    evaluated on its own."""
    router, outputs = student.router, []
    for x_D in x_BD:
        q_a, q_b = router.query(x_D).chunk(2)
        scores = (router.keys_a @ q_a)[:, None] + (router.keys_b @ q_b)[None, :]  # (side, side)
        top, experts = torch.topk(scores.flatten(), student.config.k)
        out = student.b_out
        for gate, e in zip(torch.softmax(top, dim=0), experts, strict=True):
            out = out + gate * torch.nn.functional.gelu(student.w_in[e] @ x_D + student.b_in[e]) * student.w_out[e]
        outputs.append(out if student.shared is None else out + student.shared(x_D[None])[0])
    return torch.stack(outputs)


def test_product_key_outputs_and_gradients_match_a_reference_loop() -> None:
    torch.manual_seed(6)
    config = MoEConfig(d_model=16, shared=4, experts=4900, k=4, router="product_key", rank=8)  # above the dense path
    ours = MoEStudent(config)
    x, y = torch.randn(6, 16), torch.randn(6, 16)
    torch.testing.assert_close(ours(x), product_key_reference(ours, x), rtol=1e-5, atol=1e-6)
    _loss(ours, x, y).backward()
    fast = {name: param.grad.clone() for name, param in ours.named_parameters()}
    ours.zero_grad()
    torch.nn.functional.mse_loss(product_key_reference(ours, x), y).backward()
    assert all(fast[f"router.{keys}"].abs().sum() > 0 for keys in ("keys_a", "keys_b"))  # the router learns
    for name, param in ours.named_parameters():
        torch.testing.assert_close(fast[name], param.grad, rtol=1e-4, atol=1e-7, msg=name)


def test_fused_adam_matches_default_adam() -> None:
    torch.manual_seed(7)
    config = MoEConfig(d_model=16, shared=4, experts=5000, k=4, router="lowrank", rank=8)
    a = MoEStudent(config)
    b = MoEStudent(config)
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = make_optimizer(a, 1e-2), torch.optim.Adam(b.parameters(), lr=1e-2)
    assert opt_a.defaults["fused"]
    for _ in range(3):
        x, y = torch.randn(8, 16), torch.randn(8, 16)
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad(set_to_none=True)
            _loss(model, x, y).backward()
            opt.step()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=False):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6, msg=name)


def test_baseline_rejects_unsupported() -> None:
    from secret_moe.errors import ConfigError

    with pytest.raises(ConfigError):
        PaperStudent(MoEConfig(d_model=8, shared=0, experts=16, k=2, router="lowrank", rank=4, expert_width=2))


@pytest.mark.parametrize("width", [1000, 1003, 64])  # group path with/without leftover columns; plain topk
def test_row_topk_matches_torch_topk(width: int) -> None:
    torch.manual_seed(8)
    scores = torch.randn(13, width)
    values, indices = sparse.row_topk(scores, 6)
    expected = torch.topk(scores, 6, dim=-1)
    torch.testing.assert_close(values, expected.values)
    assert torch.equal(indices, expected.indices)


@pytest.mark.parametrize("fused_path", [False, True])
@pytest.mark.parametrize(("expert_width", "sorts"), [(1, 1), (2, 2)])
def test_one_sort_per_selection(
    monkeypatch: pytest.MonkeyPatch, expert_width: int, sorts: int, fused_path: bool
) -> None:
    """The router's gate and single-neuron experts share one sort of the selection per step (`torch.sort` on
    today's path, the fused kernels' counting sort on theirs)."""
    if fused_path and fused.library() is None:
        pytest.skip("the fused kernels could not be built here")
    monkeypatch.setattr(fused, "ENABLED", fused_path)
    torch.manual_seed(10)
    config = MoEConfig(d_model=16, shared=4, experts=500, k=4, router="lowrank", rank=8, expert_width=expert_width)
    student = MoEStudent(config)
    calls = []
    module, name = (fused, "sort_pairs") if fused_path else (torch, "sort")
    real_sort = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **kw: calls.append(1) or real_sort(*a, **kw))
    _loss(student, torch.randn(8, 16), torch.randn(8, 16)).backward()
    assert len(calls) == sorts
