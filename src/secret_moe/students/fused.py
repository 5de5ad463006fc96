"""Fused CPU kernels for the MoE student (`csrc/fused_experts.cpp`), compiled on first use.

Today's PyTorch path (`sparse.GatherDot`, `sparse.BagSum`, an elementwise gelu and gate in between, and the
router's `TopKLinear` backward) makes seven passes over the B·k selected (token, expert) pairs per training
step, each gathering one row per pair, plus a `torch.sort`, several (B, k) index passes and a `torch.topk`
of the router's scores.  The fused kernels sort the pairs by expert once (a counting sort), then run the
experts' forward in two passes (expert-major pre-activations, token-major output), their backward in one
expert-major pass, and the router's backward in one.  The router's top-k is a threshold-and-sort pass over
each score row.  Sums run in a fixed order with no atomics (see the source), so the same inputs and thread
count give the same bytes.  Measured against today's path: docs/performance.md.

The source is plain C++ with a C ABI, compiled with the system's C++ compiler (`$CXX`, else `c++`: g++ from
Debian's `g++` package, or clang++) into `<cache>/secret_moe/fused-<hash>.so` (`$XDG_CACHE_HOME` or
~/.cache; the hash covers the source, the flags, the compiler's version and the machine) and loaded with
ctypes; the first use on a machine compiles (about 3 s), later ones load the cached library once it is
verified: a private folder, and the SHA-256 recorded at build time (students/kernel_cache.py).  Where it
cannot be built (no compiler, a failed build) the student falls back to today's path, with one warning in
the log; `SECRET_MOE_FUSED=0` in the environment (or `ENABLED = False`) selects today's path on purpose.
CUDA tensors, and dtypes other than float32, always take today's path.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import shlex
import subprocess
from pathlib import Path

import torch

from secret_moe.students import kernel_cache

log = logging.getLogger(__name__)

ENV = "SECRET_MOE_FUSED"  # "0": use today's PyTorch path
ENABLED = os.environ.get(ENV, "1") != "0"
SOURCE = Path(__file__).resolve().parent / "csrc" / "fused_experts.cpp"
# -O3 and no -march: one build runs on every CPU of its architecture (the source picks AVX2 + FMA at load time
# where the CPU has them); -fopenmp: threads for torch.get_num_threads() > 1 (torch's own libgomp serves them)
FLAGS = ["-O3", "-std=c++17", "-fPIC", "-shared", "-fopenmp", "-Wno-psabi"]

_P, _I, _N = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SIGNATURES = {
    "smoe_sort_pairs": ([_P, _I, _I, _I, _P, _P, _P, _P], ctypes.c_int),
    "smoe_experts_forward": ([_I, _I, _I, _I] + [_P] * 13 + [_N], None),
    "smoe_experts_backward": ([_I, _I, _I, _I] + [_P] * 15 + [_N], None),
    "smoe_linear_backward": ([_I, _I, _I, _I] + [_P] * 9 + [_N], None),
    "smoe_topk": ([_P, _I, _I, _I, _P, _P, _N], None),
}

_library: ctypes.CDLL | None = None
_tried = False


def library_name() -> str:
    """The cached library's file name for this source, compiler and machine."""
    return kernel_cache.library_name(SOURCE, *_build_inputs())


def _build_inputs() -> tuple[list[str], list[str], str, str]:
    """The compiler's command (`$CXX`, else `c++`), the flags, the compiler's `--version` text and the machine."""
    command = shlex.split(os.environ.get("CXX", "c++"))
    version = subprocess.run([*command, "--version"], capture_output=True, text=True, check=True).stdout
    return command, FLAGS, version, platform.machine()


def library() -> ctypes.CDLL | None:
    """The compiled kernels, building them on the first call; None where they cannot be built."""
    global _library, _tried
    if not _tried:
        _tried = True
        try:
            lib = kernel_cache.load_library(SOURCE, *_build_inputs())
            for name, (args, result) in _SIGNATURES.items():
                getattr(lib, name).argtypes, getattr(lib, name).restype = args, result
            _library = lib
        except (OSError, RuntimeError, subprocess.SubprocessError) as error:
            log.warning("fused CPU kernels unavailable (%s: %s); using the PyTorch path", type(error).__name__, error)
    return _library


def applies(*tensors: torch.Tensor) -> bool:
    """Whether the fused kernels run on these tensors: enabled, all float32 on the CPU, and built."""
    return (
        ENABLED and all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors) and library() is not None
    )


def sorts(idx_BK: torch.Tensor) -> bool:
    """Whether a selection's row-major sort is the fused kernels' stable counting sort."""
    return ENABLED and idx_BK.device.type == "cpu" and idx_BK.dtype == torch.int64 and library() is not None


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def sort_pairs(idx_BK: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(order, token, row, offsets (rows + 1)) of the pairs of idx sorted by row, stably."""
    idx_BK = idx_BK.contiguous()
    pairs, k = idx_BK.numel(), idx_BK.shape[1]
    order, token, row = (torch.empty(pairs, dtype=torch.int64) for _ in range(3))
    offsets = torch.empty(rows + 1, dtype=torch.int64)
    if library().smoe_sort_pairs(_ptr(idx_BK), pairs, k, rows, _ptr(order), _ptr(token), _ptr(row), _ptr(offsets)):
        raise IndexError(f"selection index out of range for {rows} rows")
    return order, token, row, offsets


class FusedExperts(torch.autograd.Function):
    """Σ_j g[b, j] · gelu(x[b] · W_in[i] + b_in[i]) · W_out[i] + b_out over the pairs (b, i = idx[b, j])."""

    @staticmethod
    def forward(ctx, x_BD, w_in, b_in, w_out, b_out, gates_BK, pairs):  # type: ignore[override]
        x_BD, gates_BK, w_in, w_out = x_BD.contiguous(), gates_BK.contiguous(), w_in.contiguous(), w_out.contiguous()
        (batch, d), (rows, k) = x_BD.shape, (w_in.shape[0], gates_BK.shape[1])
        order, token, _, _ = pairs.by_row()
        offsets, idx_BK = pairs.offsets(), pairs.idx_BK.contiguous()
        out_BD, h_BK, dh_BK = x_BD.new_empty(batch, d), x_BD.new_empty(batch, k), x_BD.new_empty(batch, k)
        library().smoe_experts_forward(
            batch, k, d, rows, *map(_ptr, (order, token, offsets, idx_BK, x_BD, w_in, b_in.contiguous(), w_out)),
            *map(_ptr, (b_out.contiguous(), gates_BK, h_BK, dh_BK, out_BD)), torch.get_num_threads(),
        )  # fmt: skip
        ctx.save_for_backward(x_BD, w_in, w_out, gates_BK, h_BK, dh_BK, order, token, offsets)
        return out_BD

    @staticmethod
    def backward(ctx, grad_BD):  # type: ignore[override]
        x_BD, w_in, w_out, gates_BK, h_BK, dh_BK, order, token, offsets = ctx.saved_tensors
        grad_BD = grad_BD.contiguous()
        (batch, d), (rows, k) = x_BD.shape, (w_in.shape[0], gates_BK.shape[1])
        grad_gates, grad_w_in, grad_w_out = torch.empty_like(gates_BK), torch.empty_like(w_in), torch.empty_like(w_out)
        grad_b_in = w_in.new_empty(rows)
        grad_x = torch.empty_like(x_BD) if ctx.needs_input_grad[0] else None
        library().smoe_experts_backward(
            batch, k, d, rows, *map(_ptr, (order, token, offsets, grad_BD, x_BD, w_in, w_out, gates_BK, h_BK, dh_BK)),
            *map(_ptr, (grad_gates, grad_w_in, grad_b_in, grad_w_out, grad_x)), torch.get_num_threads(),
        )  # fmt: skip
        grad_b_out = grad_BD.sum(0) if ctx.needs_input_grad[4] else None
        return grad_x, grad_w_in, grad_b_in, grad_w_out, grad_b_out, grad_gates, None


def linear_backward(
    grad_BK: torch.Tensor, q_BR: torch.Tensor, w_MR: torch.Tensor, pairs, need_q: bool, need_w: bool, need_b: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients of q, W and the bias through the kept scores s[b, j] = q[b] · W[idx[b, j]] (+ c[idx[b, j]])."""
    grad_BK, q_BR, w_MR = grad_BK.contiguous(), q_BR.contiguous(), w_MR.contiguous()
    (batch, rank), (rows, k) = q_BR.shape, (w_MR.shape[0], grad_BK.shape[1])
    grad_q = torch.empty_like(q_BR) if need_q else None
    grad_w = torch.empty_like(w_MR) if need_w else None
    grad_b = w_MR.new_empty(rows) if need_b else None
    library().smoe_linear_backward(
        batch, k, rank, rows, *map(_ptr, (*pairs.by_row()[:2], pairs.offsets(), grad_BK, q_BR, w_MR)),
        *map(_ptr, (grad_q, grad_w, grad_b)), torch.get_num_threads(),
    )  # fmt: skip
    return grad_q, grad_w, grad_b


def topk(scores: torch.Tensor, k: int, values: torch.Tensor, indices: torch.Tensor) -> None:
    """Write the top k of each row of scores (rows, cols) into values and indices (rows, k), best first (ties:
    the lower column first), as `torch.topk(scores, k)` gives them up to the order of ties."""
    scores = scores.contiguous()
    rows, cols = scores.shape
    assert values.is_contiguous() and indices.is_contiguous() and values.shape == indices.shape == (rows, k)
    library().smoe_topk(_ptr(scores), rows, cols, k, _ptr(values), _ptr(indices), torch.get_num_threads())
