"""Initialisation from the data (`distill.init: data`), as dictionary and SAE trainers start from data rows.

On a seeded subsample of the training rows (x centred on the sample's mean):
1. Input vectors: each hidden neuron (a dense MLP's, the MoE's shared MLP's, each single-neuron expert's) takes
   the direction of one row picked by k-means++ seeding (Arthur & Vassilvitskii 2007) over the centred, normalised
   rows, scaled so that its pre-activation is 1 on that row and its bias puts the mean at 0: the neuron fires on
   the rows it was drawn from and on rows like them.
2. The router (full or low rank) scores expert i by the same direction (through the low-rank query R1, which keeps
   its initialisation), each row of the gate with the norm the uniform initialisation gives it on average, and
   with the mean scored 0: the experts' scores start sorted by how much each row looks like each expert's row.
3. Output layer: least squares (slightly ridged) of the teacher's output on the initialised students' hidden
   activations (a dense MLP's, or the MoE's gated experts with its shared MLP), with the output bias.

Each part that a dense MLP shares with the MoE (input vectors, output layer) is initialised the same way in both.
Only full-rank and low-rank routers (`DATA_ROUTERS`) are supported.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from secret_moe.batches import ActivationBatches
from secret_moe.errors import ConfigError
from secret_moe.students.mlp import MLPStudent
from secret_moe.students.moe import MoEStudent

INITS = ("uniform", "data")
REFITS = ("none", "epoch")  # distill.refit: the output layer refit by least squares after every epoch, or never
DATA_ROUTERS = ("fullrank", "lowrank")
SAMPLE_ROWS = 8192  # rows of the subsample: a few rows per neuron at m = 1,024
RIDGE = 1e-4  # the least squares' ridge, relative to the mean diagonal of the normal equations


def sample_rows(batches: ActivationBatches, rows: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`rows` training rows (x, y) drawn without replacement by a generator of `seed` (all rows if fewer), in store
    order."""
    index = torch.randperm(batches.rows, generator=torch.Generator().manual_seed(seed))[:rows].sort().values.numpy()

    def read(array) -> torch.Tensor:  # a NumPy array (in memory) or a Zarr array
        picked = array[index] if isinstance(array, np.ndarray) else array.get_orthogonal_selection((index, slice(None)))
        return torch.as_tensor(np.asarray(picked), dtype=torch.float32)

    return read(batches.x), read(batches.y)


def kmeans_pp_rows(unit_ND: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of `count` rows of `unit_ND` (rows of norm 1) picked by k-means++ seeding: the first at random, each
    next one with probability proportional to its squared distance to the nearest row picked so far (for unit rows
    2 - 2 cos); rows are drawn again only once every distinct row is picked."""
    n = unit_ND.shape[0]
    picked = torch.empty(count, dtype=torch.long)
    picked[0] = torch.randint(n, (1,), generator=generator)
    nearest_N = (2 - 2 * (unit_ND @ unit_ND[picked[0]])).clamp_min_(0)
    for i in range(1, count):
        weights_N = nearest_N if float(nearest_N.sum()) > 0 else torch.ones(n)
        picked[i] = torch.multinomial(weights_N.double(), 1, generator=generator)
        torch.minimum(nearest_N, (2 - 2 * (unit_ND @ unit_ND[picked[i]])).clamp_min_(0), out=nearest_N)
    return picked


def neuron_weights(rows_HD: torch.Tensor, mean_D: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of neurons along the centred rows: pre-activation 1 on each row and 0 at the mean."""
    centred = rows_HD - mean_D
    weight_HD = centred / centred.pow(2).sum(dim=1, keepdim=True).clamp_min(1e-12)
    return weight_HD, -(weight_HD @ mean_D)


def _set_neurons(weight_HD: torch.Tensor, bias_H: torch.Tensor, rows_HD: torch.Tensor, mean_D: torch.Tensor) -> None:
    """Neuron j: weight along centred row j, pre-activation 1 on that row and 0 at the mean."""
    weight, bias = neuron_weights(rows_HD, mean_D)
    weight_HD.copy_(weight)
    bias_H.copy_(bias)


def router_query(student: MoEStudent, x_ND: torch.Tensor) -> torch.Tensor:
    """What the router's gate multiplies: the low-rank query R1 x, or x itself (full rank)."""
    return student.router.key_proj(x_ND) if student.config.router == "lowrank" else x_ND


def _set_router(student: MoEStudent, directions_MD: torch.Tensor, mean_D: torch.Tensor) -> None:
    """Gate row i along expert i's direction (through R1 for the low-rank router), at the uniform init's norm."""
    router = student.router
    if student.config.router not in DATA_ROUTERS:
        raise ConfigError(
            f"distill.init: data supports the routers {', '.join(DATA_ROUTERS)}, not {student.config.router!r}"
        )
    gate = router.gate
    keys = router_query(student, directions_MD)
    norm = math.sqrt(gate.weight.shape[1] / 3) / math.sqrt(gate.weight.shape[1])  # E|row| of U(±1/√fan_in)
    gate.weight.copy_(keys / keys.norm(dim=1, keepdim=True).clamp_min(1e-12) * norm)
    gate.bias.copy_(-(gate.weight @ router_query(student, mean_D[None])[0]))


@torch.no_grad()
def refit_output(student: nn.Module, x_ND: torch.Tensor, y_ND: torch.Tensor) -> None:
    """Least squares of y on the student's hidden activations (and 1), into its output layer: the data
    initialisation's last step, and `distill.refit` after every epoch (rows and student on one device)."""
    features = _hidden(student, x_ND)
    features = torch.cat([features, features.new_ones(len(features), 1)], dim=1).double()
    gram = features.T @ features
    gram += torch.eye(len(gram), dtype=gram.dtype, device=gram.device) * RIDGE * gram.diagonal().mean()
    solution = torch.linalg.solve(gram, features.T @ y_ND.double()).float()  # (F + 1, D)
    weights, bias = solution[:-1], solution[-1]
    if isinstance(student, MLPStudent):
        student.down.weight.copy_(weights.T)
        student.down.bias.copy_(bias)
        return
    neurons = student.w_out.shape[0]
    student.w_out.copy_(weights[:neurons])
    if student.shared is not None:
        student.shared.down.weight.copy_(weights[neurons:].T)
        student.shared.down.bias.zero_()
    student.b_out.copy_(bias)


def _hidden(student: nn.Module, x_ND: torch.Tensor) -> torch.Tensor:
    """(N, F): what the output layer multiplies: a dense MLP's activations, or the MoE's gated expert activations
    (zero for experts not selected) beside its shared MLP's."""
    if isinstance(student, MLPStudent):
        return nn.functional.gelu(student.up(x_ND))
    scores_NK, idx_NK = student.router(x_ND)
    neurons_NK = student.neurons_of(idx_NK)
    gates_NK = torch.softmax(scores_NK, dim=-1).repeat_interleave(student.config.expert_width, dim=1)
    blocks = zip(x_ND.split(256), neurons_NK.split(256), strict=True)  # never the whole (N, k, D) gather
    pre_NK = torch.cat([torch.einsum("nd,nkd->nk", x, student.w_in[i]) for x, i in blocks])
    act_NK = nn.functional.gelu(pre_NK + student.b_in[neurons_NK]) * gates_NK
    experts_NM = x_ND.new_zeros(len(x_ND), student.w_in.shape[0]).scatter_(1, neurons_NK, act_NK)
    if student.shared is None:
        return experts_NM
    return torch.cat([experts_NM, nn.functional.gelu(student.shared.up(x_ND))], dim=1)


@torch.no_grad()
def init_from_data(student: nn.Module, x_ND: torch.Tensor, y_ND: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Initialise `student` (an MLPStudent or MoEStudent, on CPU) from the rows (x, y), seeded; returns the rows
    each part's neurons were drawn from (`mlp`: the dense MLP's or the shared MLP's, `experts`)."""
    generator = torch.Generator().manual_seed(seed)
    mean_D = x_ND.mean(dim=0)
    centred = x_ND - mean_D
    unit_ND = centred / centred.norm(dim=1, keepdim=True).clamp_min(1e-12)
    picked = {}
    mlp = student if isinstance(student, MLPStudent) else student.shared
    if mlp is not None:
        picked["mlp"] = kmeans_pp_rows(unit_ND, mlp.up.weight.shape[0], generator)
        _set_neurons(mlp.up.weight, mlp.up.bias, x_ND[picked["mlp"]], mean_D)
    if isinstance(student, MoEStudent):
        picked["experts"] = kmeans_pp_rows(unit_ND, student.w_in.shape[0], generator)
        _set_neurons(student.w_in, student.b_in, x_ND[picked["experts"]], mean_D)
        directions = student.w_in.view(student.config.experts, student.config.expert_width, -1).mean(dim=1)
        _set_router(student, directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-12), mean_D)
    refit_output(student, x_ND, y_ND)
    return picked
