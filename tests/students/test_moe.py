"""The MoE student equals a naive per-token loop over its selected experts, and learns through every part.

Written against the public interface only: MoEConfig, MoEStudent(config), forward(x), router(x) ->
(scores_BK, idx_BK), and the attributes w_in, b_in, w_out, b_out, shared (an MLPStudent or None), router; every
router of the package's one list (ROUTERS).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from secret_moe.errors import ConfigError
from secret_moe.students.mlp import MLPConfig, MLPStudent
from secret_moe.students.moe import MoEConfig, MoEStudent
from secret_moe.students.routers import ROUTERS

D = 8


def naive_forward(student: MoEStudent, x_BD: torch.Tensor) -> torch.Tensor:
    """Gates from the router's top-k scores, then a Python loop over tokens and their selected experts."""
    config = student.config
    width = config.expert_width
    scores_BK, idx_BK = student.router(x_BD)
    gates_BK = torch.softmax(scores_BK, dim=-1)
    rows = []
    for b in range(x_BD.shape[0]):
        out = student.b_out
        for j in range(config.k):
            expert = int(idx_BK[b, j])
            for t in range(width):  # expert i owns neurons i*width ... i*width + width - 1
                n = expert * width + t
                pre = student.w_in[n] @ x_BD[b] + student.b_in[n]
                out = out + gates_BK[b, j] * nn.functional.gelu(pre) * student.w_out[n]
        if student.shared is not None:
            shared = student.shared
            out = (
                out
                + shared.down.weight @ nn.functional.gelu(shared.up.weight @ x_BD[b] + shared.up.bias)
                + shared.down.bias
            )
        rows.append(out)
    return torch.stack(rows)


def make(router: str, *, experts: int = 16, k: int = 3, shared: int = 5, width: int = 1, rank: int = 4) -> MoEStudent:
    torch.manual_seed(0)
    student = MoEStudent(
        MoEConfig(d_model=D, shared=shared, experts=experts, k=k, router=router, rank=rank, expert_width=width)
    )
    with torch.no_grad():  # break the zero init of the output bias so that it is checked too
        student.b_out.normal_()
    return student


CASES = [
    pytest.param({}, id="s5-k3"),
    pytest.param({"width": 2}, id="expert_width2"),
    pytest.param({"shared": 0}, id="no-shared"),
    pytest.param({"shared": 0, "k": 4, "width": 3}, id="no-shared-width3"),
    pytest.param({"experts": 4900, "k": 4}, id="many-experts"),
]


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("case", CASES)
def test_forward_equals_a_naive_loop(router, case):
    student = make(router, **case)
    x = torch.randn(13, D)
    out = student(x)
    assert out.shape == (13, D)
    with torch.no_grad():
        torch.testing.assert_close(out, naive_forward(student, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("case", CASES[:3])
def test_router_selects_k_distinct_valid_experts(router, case):
    student = make(router, **case)
    scores, idx = student.router(torch.randn(50, D))
    k, experts = student.config.k, student.config.experts
    assert scores.shape == idx.shape == (50, k)
    assert idx.min() >= 0 and idx.max() < experts
    assert all(len(set(row.tolist())) == k for row in idx)
    assert len(set(idx.flatten().tolist())) > k  # different tokens use different experts


@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("case", CASES[:2])
def test_gradients_match_the_naive_loop_and_reach_every_part(router, case):
    student = make(router, **case)
    x, target = torch.randn(11, D), torch.randn(11, D)
    (student(x) - target).pow(2).sum().backward()
    grads = {name: p.grad.clone() for name, p in student.named_parameters()}
    student.zero_grad()
    (naive_forward(student, x) - target).pow(2).sum().backward()
    for name, p in student.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-5, msg=f"gradient of {name}")

    for name in ("w_in", "b_in", "w_out", "b_out"):
        assert grads[name].abs().sum() > 0, name
    router_params = [n for n, _ in student.router.named_parameters()]
    assert router_params
    for name in router_params:
        assert grads[f"router.{name}"].abs().sum() > 0, f"router.{name}"
    shared_params = [n for n in grads if n.startswith("shared.")]
    assert len(shared_params) == 4
    for name in shared_params:
        assert grads[name].abs().sum() > 0, name


@pytest.mark.parametrize("router", ROUTERS)
def test_only_selected_experts_get_gradient(router):
    student = make(router)
    x = torch.randn(2, D)
    _, idx = student.router(x)
    student(x).sum().backward()
    touched = set(torch.nonzero(student.w_out.grad.abs().sum(dim=1)).flatten().tolist())
    assert touched == set(idx.flatten().tolist())


def test_active_neurons_only():
    """An expert outside the top k has no effect on the output."""
    student = make("fullrank", experts=16, k=3)
    x = torch.randn(1, D)
    _, idx = student.router(x)
    unused = next(i for i in range(16) if i not in idx[0].tolist())
    before = student(x)
    with torch.no_grad():
        student.w_out[unused] += 100.0
        student.w_in[unused] += 100.0
    torch.testing.assert_close(student(x), before)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"experts": 4, "k": 5}, "k=5, m=4"),
        ({"experts": 16, "k": 0, "shared": 0}, "k"),
        ({"experts": 16, "k": 3, "shared": -1}, "s"),
        ({"router": "sparse_magic"}, "'sparse_magic'"),
        ({"expert_width": 0}, "expert_width"),
    ],
)
def test_bad_config_is_a_config_error(fields, match):
    base = {"d_model": D, "shared": 2, "experts": 16, "k": 3, "router": "lowrank", "rank": 4}
    with pytest.raises(ConfigError, match=match):
        MoEStudent(MoEConfig(**{**base, **fields}))


def test_shared_plus_k_zero_is_refused():
    with pytest.raises(ConfigError):
        MoEConfig(d_model=D, shared=0, experts=16, k=0, router="lowrank")


@pytest.mark.parametrize("experts", [50, 15, 1000])
def test_product_key_needs_a_square_number_of_experts(experts):
    with pytest.raises(ConfigError, match=f"got {experts}"):
        MoEStudent(MoEConfig(d_model=D, shared=2, experts=experts, k=3, router="product_key", rank=4))


def test_mlp_student_is_a_gelu_mlp():
    torch.manual_seed(0)
    mlp = MLPStudent(MLPConfig(D, 6))
    x = torch.randn(4, D)
    expected = nn.functional.gelu(x @ mlp.up.weight.T + mlp.up.bias) @ mlp.down.weight.T + mlp.down.bias
    torch.testing.assert_close(mlp(x), expected)
    with pytest.raises(ConfigError):
        MLPConfig(D, 0)


@pytest.mark.cuda
@pytest.mark.parametrize("router", ROUTERS)
@pytest.mark.parametrize("case", CASES)
def test_forward_and_gradients_on_cuda_equal_cpu(router, case):
    import copy

    student = make(router, **case)
    x, target = torch.randn(64, D), torch.randn(64, D)
    gpu = copy.deepcopy(student).cuda()
    out_cpu, out_gpu = student(x), gpu(x.cuda())
    _, idx_cpu = student.router(x)
    _, idx_gpu = gpu.router(x.cuda())
    # compare only tokens whose selected experts agree (near-ties may be broken differently)
    same = (idx_cpu.sort(dim=1).values == idx_gpu.cpu().sort(dim=1).values).all(dim=1)
    assert same.float().mean() > 0.9
    torch.testing.assert_close(out_gpu.detach().cpu()[same], out_cpu.detach()[same], rtol=1e-4, atol=1e-4)
    if same.all():
        (student(x) - target).pow(2).sum().backward()
        (gpu(x.cuda()) - target.cuda()).pow(2).sum().backward()
        for (name, p), q in zip(student.named_parameters(), gpu.parameters(), strict=False):
            torch.testing.assert_close(q.grad.cpu(), p.grad, rtol=1e-3, atol=1e-4, msg=name)
