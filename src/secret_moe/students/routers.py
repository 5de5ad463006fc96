"""Routers: score experts for each token and keep the top k.

All return (scores_BK, idx_BK), the raw scores of the k selected experts and their indices; the MoE
turns the scores into gates with a softmax over those k (as in the paper).  `route` returns the
selection as `sparse.Pairs` instead, whose sort the MoE's expert tables reuse.  `fullrank` and `lowrank`
score every expert densely, as the paper does, but back-propagate through the k kept scores only
(`sparse.TopKLinear`): the gradient of the (m, ·) gate matrix and of the query touches k columns per token.
- `fullrank`: scores = R x + c, R of shape (m, d).
- `lowrank`: scores = R2 (R1 x) + c with R1 (r, d), R2 (m, r); the paper's router, r = 128 (256 for
  Pythia-410M).
- `product_key`: product-key memory routing (Lample et al. 2019; PEER, He 2024): a low-rank query split
  in two halves, each scored against √m sub-keys, top-k per half, then top-k over the k×k sums.  Scoring
  costs O(√m·r) per token instead of O(m·r), so m can reach a million.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from secret_moe.errors import ConfigError
from secret_moe.students.sparse import Pairs, topk_linear

ROUTERS = ("fullrank", "lowrank", "product_key")


class Router(nn.Module):
    """Scores experts and keeps the top k: `route(x)` gives (scores_BK, Pairs), `forward(x)` (scores, idx)."""

    def route(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, Pairs]:
        raise NotImplementedError

    def forward(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scores_BK, pairs = self.route(x_BD)
        return scores_BK, pairs.idx_BK


class FullRankRouter(Router):
    def __init__(self, d_model: int, experts: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.gate = nn.Linear(d_model, experts)
        self.scratch: dict = {}  # score buffer reused between calls; not state

    def route(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, Pairs]:
        return topk_linear(x_BD, self.gate.weight, self.gate.bias, self.k, self.scratch)


class LowRankRouter(Router):
    def __init__(self, d_model: int, experts: int, k: int, rank: int) -> None:
        super().__init__()
        self.k = k
        self.key_proj = nn.Linear(d_model, rank, bias=False)
        self.gate = nn.Linear(rank, experts)
        self.scratch: dict = {}  # score buffer reused between calls; not state

    def route(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, Pairs]:
        return topk_linear(self.key_proj(x_BD), self.gate.weight, self.gate.bias, self.k, self.scratch)


class ProductKeyRouter(Router):
    def __init__(self, d_model: int, experts: int, k: int, rank: int) -> None:
        super().__init__()
        side = math.isqrt(experts)
        if side * side != experts:
            raise ConfigError(
                f"product_key router needs a square number of experts, got {experts} "
                f"(nearest: {side * side} or {(side + 1) ** 2})"
            )
        if rank % 2:
            raise ConfigError(f"product_key router needs an even rank, got {rank}")
        if k > side:
            raise ConfigError(f"product_key router needs k <= sqrt(m) = {side}, got k = {k}")
        self.k, self.side = k, side
        self.query = nn.Linear(d_model, rank)
        self.keys_a = nn.Parameter(torch.randn(side, rank // 2) / math.sqrt(rank // 2))
        self.keys_b = nn.Parameter(torch.randn(side, rank // 2) / math.sqrt(rank // 2))

    def route(self, x_BD: torch.Tensor) -> tuple[torch.Tensor, Pairs]:
        q_a, q_b = self.query(x_BD).chunk(2, dim=-1)  # (B, r/2) each
        top_a, idx_a = torch.topk(q_a @ self.keys_a.T, self.k, dim=-1)  # (B, k)
        top_b, idx_b = torch.topk(q_b @ self.keys_b.T, self.k, dim=-1)  # (B, k)
        sums_BKK = top_a[:, :, None] + top_b[:, None, :]
        scores, flat = torch.topk(sums_BKK.flatten(1), self.k, dim=-1)  # (B, k)
        idx = idx_a.gather(1, flat // self.k) * self.side + idx_b.gather(1, flat % self.k)
        return scores, Pairs(idx, self.side * self.side)


def build_router(name: str, d_model: int, experts: int, k: int, rank: int) -> Router:
    if name == "fullrank":
        return FullRankRouter(d_model, experts, k)
    if name == "lowrank":
        return LowRankRouter(d_model, experts, k, rank)
    if name == "product_key":
        return ProductKeyRouter(d_model, experts, k, rank)
    raise ConfigError(f"unknown router {name!r}; choose one of {ROUTERS}")
