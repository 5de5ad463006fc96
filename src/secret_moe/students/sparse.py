"""Sparse building blocks for the MoE student: every pass touches only the k rows each token selected.

Three primitives over a table W (N, D) and per-token selections idx (B, K) with weights c (B, K):

- `gather_dot(x, W, idx)[b, j] = x[b] · W[idx[b, j]]`          (scores / pre-activations of selected rows)
- `bag_sum(idx, W, c)[b] = Σ_j c[b, j] W[idx[b, j]]`            (`embedding_bag` with per-sample weights)
- `scatter_outer(idx, c, x, N)[i] = Σ_{idx[b, j] = i} c[b, j] x[b]`  (gradient of W in both of the above)

None materialises a (B, K, D) gather: `gather_dot` is the fused kernel PyTorch uses for the per-sample
weights gradient of `embedding_bag`, and `scatter_outer` multiplies a (N, B) CSR matrix holding the B·K
pairs by x.  They are adjoint to one another, which gives three autograd Functions:

- `GatherDot` (x, W, idx) → gather_dot; backward: grad x = bag_sum, grad W = scatter_outer;
- `BagSum` (idx, W, c) → bag_sum; backward: grad c = gather_dot, grad W = scatter_outer;
- `TopKLinear` (q, W, b, k) → top-k of q Wᵀ + b (dense, as the paper scores all experts); its backward
  only involves the k selected columns per row: grad q = bag_sum, grad W = scatter_outer, grad b = a
  scatter-add, instead of multiplying a dense (B, m) score gradient that is zero almost everywhere.

The dense (B, m) scores of `TopKLinear` are computed in row blocks, in a buffer the caller keeps between
calls, so no (B, m) tensor is ever allocated; `row_topk` finds each row's top k by group maxima first.
`tests/students/test_fast_equivalence.py` checks all of this against the paper's formulation
(`baseline.py`) and with `torch.autograd.gradcheck`.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

# Private ATen kernels (present in every PyTorch 2.x); the fallbacks compute the same with public ops.
_PER_SAMPLE_DOT = getattr(torch.ops.aten, "_embedding_bag_per_sample_weights_backward", None)
USE_ATEN_KERNELS = _PER_SAMPLE_DOT is not None

# Dense router scores are computed in row blocks of at most this many elements (rows × experts): 128 MiB
# in float32, 256 rows at m = 1e5 (large blocks keep the matrix product efficient).
SCORE_BLOCK_ELEMENTS = 1 << 25


def _bag_layout(idx_BK: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flat indices, bag offsets and bag of each flat entry for B bags of K entries."""
    batch, k = idx_BK.shape
    flat = idx_BK.reshape(-1)
    offsets = torch.arange(0, batch * k, k, device=idx_BK.device)
    offset2bag = torch.arange(batch, device=idx_BK.device).repeat_interleave(k)
    return flat, offsets, offset2bag


def gather_dot(x_BD: torch.Tensor, w_ND: torch.Tensor, idx_BK: torch.Tensor) -> torch.Tensor:
    """(B, K): x[b] · W[idx[b, j]], without gathering the (B, K, D) rows."""
    batch, k = idx_BK.shape
    if USE_ATEN_KERNELS:
        flat, offsets, offset2bag = _bag_layout(idx_BK)
        out = _PER_SAMPLE_DOT(x_BD.contiguous(), w_ND, flat, offsets, offset2bag, 0, -1)
        return out.view(batch, k)
    # fallback: gather in blocks of tokens so the (b, K, D) block stays small
    step = max(1, (1 << 20) // max(1, k * w_ND.shape[1]))
    return (
        torch.cat(
            [torch.einsum("bd,bkd->bk", x_BD[i : i + step], w_ND[idx_BK[i : i + step]]) for i in range(0, batch, step)]
        )
        if batch
        else x_BD.new_zeros(0, k)
    )


def bag_sum(idx_BK: torch.Tensor, w_ND: torch.Tensor, c_BK: torch.Tensor) -> torch.Tensor:
    """(B, D): Σ_j c[b, j] W[idx[b, j]]."""
    return nn.functional.embedding_bag(idx_BK, w_ND, per_sample_weights=c_BK.contiguous(), mode="sum")


def scatter_outer(idx_BK: torch.Tensor, c_BK: torch.Tensor, x_BD: torch.Tensor, rows: int) -> torch.Tensor:
    """(rows, D): row i is Σ over the pairs (b, j) with idx[b, j] = i of c[b, j] x[b]."""
    batch, k = idx_BK.shape
    flat = idx_BK.reshape(-1)
    sorted_idx, order = torch.sort(flat)
    counts = torch.bincount(sorted_idx, minlength=rows)
    crow = torch.zeros(rows + 1, dtype=torch.int64, device=flat.device)
    torch.cumsum(counts, 0, out=crow[1:])
    with warnings.catch_warnings():  # "Sparse CSR tensor support is in beta state"
        warnings.simplefilter("ignore", UserWarning)
        matrix = torch.sparse_csr_tensor(
            crow,
            torch.div(order, k, rounding_mode="floor"),
            c_BK.reshape(-1)[order],
            size=(rows, batch),
            dtype=x_BD.dtype,
            device=x_BD.device,
            check_invariants=False,
        )
    # `matrix @ x` zero-fills its result and then copies into it; addmm with beta = 0 writes every row once.
    out = x_BD.new_empty(rows, x_BD.shape[1])
    return torch.addmm(out, matrix, x_BD, beta=0, out=out)


class GatherDot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x_BD, w_ND, idx_BK):  # type: ignore[override]
        ctx.save_for_backward(x_BD, w_ND, idx_BK)
        return gather_dot(x_BD, w_ND, idx_BK)

    @staticmethod
    def backward(ctx, grad_BK):  # type: ignore[override]
        x_BD, w_ND, idx_BK = ctx.saved_tensors
        grad_x = bag_sum(idx_BK, w_ND, grad_BK) if ctx.needs_input_grad[0] else None
        grad_w = scatter_outer(idx_BK, grad_BK, x_BD, w_ND.shape[0]) if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None


class BagSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, idx_BK, w_ND, c_BK):  # type: ignore[override]
        ctx.save_for_backward(idx_BK, w_ND, c_BK)
        return bag_sum(idx_BK, w_ND, c_BK)

    @staticmethod
    def backward(ctx, grad_BD):  # type: ignore[override]
        idx_BK, w_ND, c_BK = ctx.saved_tensors
        grad_w = scatter_outer(idx_BK, c_BK, grad_BD, w_ND.shape[0]) if ctx.needs_input_grad[1] else None
        grad_c = gather_dot(grad_BD, w_ND, idx_BK) if ctx.needs_input_grad[2] else None
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


def topk_scores(
    q_BR: torch.Tensor, w_MR: torch.Tensor, b_M: torch.Tensor | None, k: int, scratch: dict | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top k of q Wᵀ + b per row (values, indices), scoring a block of rows at a time."""
    batch, experts = q_BR.shape[0], w_MR.shape[0]
    blocks = max(1, math.ceil(batch * experts / SCORE_BLOCK_ELEMENTS))
    step = math.ceil(batch / blocks) if batch else 1
    buf = _block(scratch, step, experts, q_BR)
    values = q_BR.new_empty(batch, k)
    indices = torch.empty(batch, k, dtype=torch.int64, device=q_BR.device)
    for start in range(0, batch, step):
        rows = min(step, batch - start)
        scores = buf[:rows]
        torch.mm(q_BR[start : start + rows], w_MR.T, out=scores)
        if b_M is not None:
            scores.add_(b_M)
        values[start : start + rows], indices[start : start + rows] = row_topk(scores, k)
    return values, indices


class TopKLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q_BR, w_MR, b_M, k, scratch=None):  # type: ignore[override]
        values, indices = topk_scores(q_BR, w_MR, b_M, k, scratch)
        ctx.save_for_backward(q_BR, w_MR, indices)
        ctx.has_bias = b_M is not None
        ctx.mark_non_differentiable(indices)
        return values, indices

    @staticmethod
    def backward(ctx, grad_BK, _grad_idx):  # type: ignore[override]
        q_BR, w_MR, idx_BK = ctx.saved_tensors
        if grad_BK is None:
            return None, None, None, None, None
        grad_q = bag_sum(idx_BK, w_MR, grad_BK) if ctx.needs_input_grad[0] else None
        grad_w = scatter_outer(idx_BK, grad_BK, q_BR, w_MR.shape[0]) if ctx.needs_input_grad[1] else None
        grad_b = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_BK.new_zeros(w_MR.shape[0]).index_add_(0, idx_BK.reshape(-1), grad_BK.reshape(-1))
        return grad_q, grad_w, grad_b, None, None


def topk_linear(
    q_BR: torch.Tensor, w_MR: torch.Tensor, b_M: torch.Tensor | None, k: int, scratch: dict | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(top-k values, indices) of q Wᵀ + b, differentiable in the kept values; `scratch` (a dict the
    caller keeps) holds the score buffer between calls."""
    return TopKLinear.apply(q_BR, w_MR, b_M, k, scratch)
