"""The paper's MoE student written plainly, as the authors' code does it: the benchmark baseline and test oracle.

Router: `gate(key_proj(x))` scores all m experts densely (`lowrank`; `fullrank` scores with one Linear(d→m)),
`torch.topk` keeps k, softmax over the k scores gives the gates.  Experts live in `nn.Embedding`s and are
gathered per token as (B, k, d) tensors:

    pre = einsum('bd,bkd->bk', x, emb_down(idx)) + down_bias(idx)
    out = einsum('bk,bkd->bd', gelu(pre) * gates, emb_up(idx)) + up_bias

Initialisation: emb_down, down_bias ~ U(±1/√d), emb_up ~ U(±1/√k), up_bias 0.  `PaperStudent` adds the
shared dense MLP (Linear → GELU → Linear of width s), as `MoEStudent` does.

Parameter names follow `MoEStudent` where the layout allows (`router.*`, `shared.*`); the experts keep the
paper's embedding names, and `load_student_weights` / `student_state_dict` convert between the two.
Experts have width 1 (the paper's setting); only the `lowrank` and `fullrank` routers exist here.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from secret_moe.errors import ConfigError
from secret_moe.students.mlp import MLPConfig, MLPStudent
from secret_moe.students.moe import MoEConfig


class PaperRouter(nn.Module):
    """Dense scores of all m experts, then `torch.topk`; returns (scores_BK, idx_BK) like our routers."""

    def __init__(self, kind: str, d_model: int, experts: int, k: int, rank: int) -> None:
        super().__init__()
        self.k = k
        if kind == "lowrank":
            self.key_proj: nn.Module = nn.Linear(d_model, rank, bias=False)
            self.gate = nn.Linear(rank, experts)
        elif kind == "fullrank":
            self.key_proj = nn.Identity()
            self.gate = nn.Linear(d_model, experts)
        else:
            raise ConfigError(f"the paper baseline has lowrank and fullrank routers only, not {kind!r}")

    def forward(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.topk(self.gate(self.key_proj(x_BD)), self.k, dim=-1)


class PaperMoE(nn.Module):
    """The MoE layer of the paper: m single-neuron experts as embeddings, k per token."""

    def __init__(self, d_model: int, experts: int, k: int, router: str = "lowrank", rank: int = 128) -> None:
        super().__init__()
        self.k = k
        self.router = PaperRouter(router, d_model, experts, k, rank)
        bound_in, bound_out = 1 / math.sqrt(d_model), 1 / math.sqrt(k)
        self.emb_down = nn.Embedding(experts, d_model)
        self.down_bias = nn.Embedding(experts, 1)
        self.emb_up = nn.Embedding(experts, d_model)
        self.up_bias = nn.Parameter(torch.zeros(d_model))
        with torch.no_grad():
            self.emb_down.weight.uniform_(-bound_in, bound_in)
            self.down_bias.weight.uniform_(-bound_in, bound_in)
            self.emb_up.weight.uniform_(-bound_out, bound_out)

    def forward(self, x_BD: torch.Tensor) -> torch.Tensor:
        scores_BK, idx_BK = self.router(x_BD)
        gates_BK = torch.softmax(scores_BK, dim=-1)
        w_down_BKD = self.emb_down(idx_BK)
        pre_BK = torch.einsum("bd,bkd->bk", x_BD, w_down_BKD) + self.down_bias(idx_BK).squeeze(-1)
        h_BK = nn.functional.gelu(pre_BK) * gates_BK
        w_up_BKD = self.emb_up(idx_BK)
        return torch.einsum("bk,bkd->bd", h_BK, w_up_BKD) + self.up_bias


class PaperStudent(nn.Module):
    """`PaperMoE` plus the shared dense MLP of width s: the paper's student, for a `MoEConfig`."""

    def __init__(self, config: MoEConfig) -> None:
        super().__init__()
        if config.expert_width != 1:
            raise ConfigError(f"the paper baseline has single-neuron experts, got expert_width={config.expert_width}")
        self.config = config
        self.shared = MLPStudent(MLPConfig(config.d_model, config.shared)) if config.shared else None
        self.moe = PaperMoE(config.d_model, config.experts, config.k, config.router, config.rank)

    def forward(self, x_BD: torch.Tensor) -> torch.Tensor:
        out_BD = self.moe(x_BD)
        return out_BD if self.shared is None else out_BD + self.shared(x_BD)


# MoEStudent name -> (PaperStudent name, reshape from ours to theirs)
_EXPERT_NAMES = {
    "w_in": ("moe.emb_down.weight", lambda t: t),
    "b_in": ("moe.down_bias.weight", lambda t: t[:, None]),
    "w_out": ("moe.emb_up.weight", lambda t: t),
    "b_out": ("moe.up_bias", lambda t: t),
}


def paper_name(student_name: str) -> str:
    """The PaperStudent parameter holding what MoEStudent calls `student_name`."""
    if student_name in _EXPERT_NAMES:
        return _EXPERT_NAMES[student_name][0]
    if student_name.startswith("router."):
        return "moe." + student_name
    return student_name


def load_student_weights(paper: PaperStudent, student: nn.Module) -> PaperStudent:
    """Copy a MoEStudent's weights into `paper` (same config), so both compute the same function."""
    state = {}
    for name, tensor in student.state_dict().items():
        reshape = _EXPERT_NAMES[name][1] if name in _EXPERT_NAMES else (lambda t: t)
        state[paper_name(name)] = reshape(tensor).clone()
    paper.load_state_dict(state)
    return paper


def paper_from_student(student: nn.Module) -> PaperStudent:
    return load_student_weights(PaperStudent(student.config), student)


def student_grads(paper: PaperStudent, student: nn.Module) -> dict[str, torch.Tensor | None]:
    """The baseline's parameter gradients, renamed and reshaped to MoEStudent's layout."""
    params = dict(paper.named_parameters())
    grads = {}
    for name, _ in student.named_parameters():
        grad = params[paper_name(name)].grad
        grads[name] = None if grad is None else grad.reshape(dict(student.named_parameters())[name].shape)
    return grads
