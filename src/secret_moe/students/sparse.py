"""Sparse building blocks for the MoE student: every pass touches only the k rows each token selected.

Three primitives over a table W (N, D) and the `Pairs` of a selection idx (B, K), with weights c (B, K):

- `gather_dot(x, W, pairs)[b, j] = x[b] · W[idx[b, j]]`         (scores / pre-activations of selected rows)
- `bag_sum(pairs, W, c)[b] = Σ_j c[b, j] W[idx[b, j]]`          (`embedding_bag` with per-sample weights)
- `scatter_outer(pairs, c, x)[i] = Σ_{idx[b, j] = i} c[b, j] x[b]`  (gradient of W in both of the above)

None materialises a (B, K, D) gather.  `gather_dot` is the fused kernel PyTorch uses for the per-sample
weights gradient of `embedding_bag`, run over the pairs sorted by row; `scatter_outer` is an
`embedding_bag` over x with one bag per row of W, in the same sorted order.  `Pairs` sorts a selection
once and every product over it in a step reuses the sort.  They are adjoint to one another, which gives
three autograd Functions:

- `GatherDot` (x, W, pairs) → gather_dot; backward: grad x = bag_sum, grad W = scatter_outer;
- `BagSum` (pairs, W, c) → bag_sum; backward: grad c = gather_dot, grad W = scatter_outer;
- `TopKLinear` (q, W, b, k) → top-k of q Wᵀ + b (dense, as the paper scores all experts) and its pairs;
  its backward only involves the k selected columns per row: grad q = bag_sum, grad W = scatter_outer,
  grad b = a scatter-add, instead of multiplying a dense (B, m) score gradient that is zero almost
  everywhere.

The dense (B, m) scores of `TopKLinear` are computed in cache-sized row blocks, in a buffer the caller keeps
between calls, so no (B, m) tensor is ever allocated; `row_topk` finds each row's top k by group maxima
first.  `tests/students/test_fast_equivalence.py` checks all of this against the paper's formulation
(`baseline.py`) and with `torch.autograd.gradcheck`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from secret_moe.students import fused

# Private ATen kernels (present in every PyTorch 2.x); the fallbacks compute the same with public ops.
_PER_SAMPLE_DOT = getattr(torch.ops.aten, "_embedding_bag_per_sample_weights_backward", None)
USE_ATEN_KERNELS = _PER_SAMPLE_DOT is not None

# Dense router scores are computed in row blocks of about this many elements (rows × experts; 4 MiB in
# float32, 256 rows at m = 4096), and at least this many rows (100 MiB at m = 1e5).
SCORE_BLOCK_ELEMENTS = 1 << 20
MIN_SCORE_BLOCK_ROWS = 256


class Pairs:
    """The B·K (token, row) pairs of a selection idx (B, K) into a table of N rows, in two orders.

    Token-major is the selection as given (bag b holds the rows idx[b, :]).  Row-major sorts the pairs by
    row: `order` (positions in the flattened selection), `token` and `row` of each sorted pair, and `starts`
    (where each row's pairs begin).  The sort is done once, on first use, and shared by every product over
    the same selection in a step (the router's gate and both expert tables, when experts are single neurons).
    """

    def __init__(self, idx_BK: torch.Tensor, rows: int) -> None:
        self.idx_BK, self.rows = idx_BK, rows
        self._by_row: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._offsets: torch.Tensor | None = None

    def by_row(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(order, token, row, starts) of the row-major order (stable, i.e. token order within a row, where
        the fused kernels sort; `torch.sort`'s order otherwise)."""
        if self._by_row is None and fused.sorts(self.idx_BK):
            order_P, token_P, row_P, offsets_N1 = fused.sort_pairs(self.idx_BK, self.rows)
            self._by_row, self._offsets = (order_P, token_P, row_P, offsets_N1[:-1]), offsets_N1
        if self._by_row is None:
            k = self.idx_BK.shape[1]
            row_P, order_P = torch.sort(self.idx_BK.reshape(-1))
            starts_N = torch.zeros(self.rows, dtype=torch.int64, device=row_P.device)
            torch.cumsum(torch.bincount(row_P, minlength=self.rows)[:-1], 0, out=starts_N[1:])
            self._by_row = (order_P, torch.div(order_P, k, rounding_mode="floor"), row_P, starts_N)
        return self._by_row

    def offsets(self) -> torch.Tensor:
        """(rows + 1,): where each row's pairs begin in the row-major order, then the number of pairs."""
        if self._offsets is None:
            order_P, _, _, starts_N = self.by_row()
            self._offsets = torch.cat([starts_N, starts_N.new_tensor([order_P.numel()])])
        return self._offsets


def gather_dot(x_BD: torch.Tensor, w_ND: torch.Tensor, pairs: Pairs) -> torch.Tensor:
    """(B, K): x[b] · W[idx[b, j]], without gathering the (B, K, D) rows.

    The dot products run in row-major order (each row of W is read once, for all the tokens that selected
    it, while the (B, D) block of tokens stays in cache) and are then put back in token-major order."""
    batch, k = pairs.idx_BK.shape
    if USE_ATEN_KERNELS:
        order_P, token_P, row_P, starts_N = pairs.by_row()
        dots_P = _PER_SAMPLE_DOT(w_ND.contiguous(), x_BD.contiguous(), token_P, starts_N, row_P, 0, -1)
        return dots_P.new_empty(batch * k).index_put_((order_P,), dots_P).view(batch, k)
    # fallback: gather in blocks of tokens so the (b, K, D) block stays small
    idx_BK = pairs.idx_BK
    step = max(1, (1 << 20) // max(1, k * w_ND.shape[1]))
    return (
        torch.cat(
            [torch.einsum("bd,bkd->bk", x_BD[i : i + step], w_ND[idx_BK[i : i + step]]) for i in range(0, batch, step)]
        )
        if batch
        else x_BD.new_zeros(0, k)
    )


def bag_sum(pairs: Pairs, w_ND: torch.Tensor, c_BK: torch.Tensor) -> torch.Tensor:
    """(B, D): Σ_j c[b, j] W[idx[b, j]]."""
    return nn.functional.embedding_bag(pairs.idx_BK, w_ND, per_sample_weights=c_BK.contiguous(), mode="sum")


def scatter_outer(pairs: Pairs, c_BK: torch.Tensor, x_BD: torch.Tensor) -> torch.Tensor:
    """(N, D): row i is Σ over the pairs (b, j) with idx[b, j] = i of c[b, j] x[b]: an `embedding_bag` over
    x with one bag per row of the table, in row-major order (rows nobody selected get zeros)."""
    order_P, token_P, _, starts_N = pairs.by_row()
    weights_P = c_BK.reshape(-1)[order_P]
    return nn.functional.embedding_bag(token_P, x_BD, starts_N, per_sample_weights=weights_P, mode="sum")


class GatherDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_BD, w_ND, pairs):  # type: ignore[override]
        ctx.save_for_backward(x_BD, w_ND)
        ctx.pairs = pairs
        return gather_dot(x_BD, w_ND, pairs)

    @staticmethod
    def backward(ctx, grad_BK):  # type: ignore[override]
        x_BD, w_ND = ctx.saved_tensors
        grad_x = bag_sum(ctx.pairs, w_ND, grad_BK) if ctx.needs_input_grad[0] else None
        grad_w = scatter_outer(ctx.pairs, grad_BK, x_BD) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None


class BagSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pairs, w_ND, c_BK):  # type: ignore[override]
        ctx.save_for_backward(w_ND, c_BK)
        ctx.pairs = pairs
        return bag_sum(pairs, w_ND, c_BK)

    @staticmethod
    def backward(ctx, grad_BD):  # type: ignore[override]
        w_ND, c_BK = ctx.saved_tensors
        grad_w = scatter_outer(ctx.pairs, c_BK, grad_BD) if ctx.needs_input_grad[1] else None
        grad_c = gather_dot(grad_BD, w_ND, ctx.pairs) if ctx.needs_input_grad[2] else None
        return None, grad_w, grad_c


def row_topk(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.topk(scores, k, dim=-1)`, faster for k much smaller than the row.

    The first G·g columns of a row are split into G groups of g, group j holding columns j, j + G, j + 2G, …;
    the top k values lie in the k groups of largest maximum (a group holding one of them has its maximum
    >= the k-th value, and at most k group maxima can be), so a pass of group maxima (elementwise maxima
    of g contiguous slices), a top-k over the G maxima and a top-k over the k·g candidates (plus the < g
    leftover columns) give the same values and indices, ties excepted (whose order `torch.topk` does not
    specify either).
    """
    rows, width = scores.shape
    group = math.isqrt(width // k) if k else 0
    if group < 8:
        return torch.topk(scores, k, dim=-1)
    groups = width // group
    maxima = scores[:, : groups * group].unflatten(1, (group, groups)).amax(1)  # (rows, G)
    _, top_groups = torch.topk(maxima, k, dim=-1, sorted=False)
    cols = (top_groups[:, :, None] + groups * torch.arange(group, device=scores.device)).flatten(1)
    if groups * group < width:
        tail = torch.arange(groups * group, width, device=scores.device).expand(rows, -1)
        cols = torch.cat([cols, tail], dim=1)
    values, picked = torch.topk(scores.gather(1, cols), k, dim=-1)
    return values, cols.gather(1, picked)


def _block(scratch: dict | None, rows: int, cols: int, like: torch.Tensor) -> torch.Tensor:
    """A (rows, cols) work buffer, kept in `scratch` between calls (large fresh allocations page-fault)."""
    key = (like.device, like.dtype)
    buf = scratch.get(key) if scratch is not None else None
    if buf is None or buf.shape[1] != cols or buf.shape[0] < rows:
        buf = like.new_empty(rows, cols)
        if scratch is not None:
            scratch.clear()
            scratch[key] = buf
    return buf[:rows]


def score_block_rows(batch: int, experts: int) -> int:
    """Rows of scores computed at a time: about `SCORE_BLOCK_ELEMENTS` scores (a block that stays in cache
    for the group maxima and the gather that follow), but at least `MIN_SCORE_BLOCK_ROWS` rows (so the
    matrix product stays efficient); the blocks of a batch are of equal size."""
    if not batch:
        return 1
    cap = max(MIN_SCORE_BLOCK_ROWS, SCORE_BLOCK_ELEMENTS // max(1, experts))
    blocks = math.ceil(batch / cap)
    return math.ceil(batch / blocks)


def topk_scores(
    q_BR: torch.Tensor, w_MR: torch.Tensor, b_M: torch.Tensor | None, k: int, scratch: dict | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top k of q Wᵀ + b per row (values, indices), scoring a block of rows at a time."""
    batch, experts = q_BR.shape[0], w_MR.shape[0]
    step = score_block_rows(batch, experts)
    buf = _block(scratch, step, experts, q_BR)
    values = q_BR.new_empty(batch, k)
    indices = torch.empty(batch, k, dtype=torch.int64, device=q_BR.device)
    for start in range(0, batch, step):
        rows = min(step, batch - start)
        scores = buf[:rows]
        torch.mm(q_BR[start : start + rows], w_MR.T, out=scores)
        if b_M is not None:
            scores.add_(b_M)
        if fused.applies(scores):
            fused.topk(scores, k, values[start : start + rows], indices[start : start + rows])
        else:
            values[start : start + rows], indices[start : start + rows] = row_topk(scores, k)
    return values, indices


class TopKLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q_BR, w_MR, b_M, k, scratch=None):  # type: ignore[override]
        values, indices = topk_scores(q_BR, w_MR, b_M, k, scratch)
        ctx.save_for_backward(q_BR, w_MR)
        ctx.pairs = Pairs(indices, w_MR.shape[0])
        ctx.has_bias = b_M is not None
        return values, ctx.pairs

    @staticmethod
    def backward(ctx, grad_BK, _grad_pairs):  # type: ignore[override]
        q_BR, w_MR = ctx.saved_tensors
        if grad_BK is None:
            return None, None, None, None, None
        if fused.applies(grad_BK, q_BR, w_MR):
            grad_q, grad_w, grad_b = fused.linear_backward(
                grad_BK, q_BR, w_MR, ctx.pairs, *ctx.needs_input_grad[:2], ctx.has_bias and ctx.needs_input_grad[2]
            )
            return grad_q, grad_w, grad_b, None, None
        grad_q = bag_sum(ctx.pairs, w_MR, grad_BK) if ctx.needs_input_grad[0] else None
        grad_w = scatter_outer(ctx.pairs, grad_BK, q_BR) if ctx.needs_input_grad[1] else None
        grad_b = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            flat = ctx.pairs.idx_BK.reshape(-1)
            grad_b = grad_BK.new_zeros(w_MR.shape[0]).index_add_(0, flat, grad_BK.reshape(-1))
        return grad_q, grad_w, grad_b, None, None


def topk_linear(
    q_BR: torch.Tensor, w_MR: torch.Tensor, b_M: torch.Tensor | None, k: int, scratch: dict | None = None
) -> tuple[torch.Tensor, Pairs]:
    """(top-k values, their `Pairs`) of q Wᵀ + b, differentiable in the kept values; `scratch` (a dict the
    caller keeps) holds the score buffer between calls.  The pairs' row-major sort is shared with whatever
    else uses the same selection (`MoEStudent`'s expert tables).  Under autocast the scores are computed in
    the autocast dtype, as autocast runs a Linear (the expert kernels, not autocast ops, stay float32)."""
    if torch.is_autocast_enabled(q_BR.device.type):
        dtype = torch.get_autocast_dtype(q_BR.device.type)
        q_BR, w_MR, b_M = q_BR.to(dtype), w_MR.to(dtype), b_M.to(dtype) if b_M is not None else None
    return TopKLinear.apply(q_BR, w_MR, b_M, k, scratch)
