"""keep_freed_memory: a training step stops taking fresh pages from the kernel, and computes the same."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from secret_moe.memory import keep_freed_memory

# Five training steps of a MoE student whose (m, d) gradients are 2 MiB each, after two warm-up steps: the
# minor page faults taken by the five, and a checksum of the weights.
STEPS = """
import json, resource, sys, torch
from secret_moe.memory import keep_freed_memory
kept = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.set_num_threads(1)
torch.manual_seed(0)
from secret_moe.students.moe import MoEConfig, MoEStudent
from secret_moe.students.optim import make_optimizer
student = MoEStudent(MoEConfig(d_model=128, shared=8, experts=4096, k=8, router="lowrank", rank=32))
optimizer = make_optimizer(student, 1e-3)
x, y = torch.randn(512, 128), torch.randn(512, 128)
def step():
    optimizer.zero_grad(set_to_none=True)
    torch.nn.functional.mse_loss(student(x), y).backward()
    optimizer.step()
step(); step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"kept": kept, "faults": faults, "sum": sum(p.double().sum().item() for p in student.parameters())}))
"""


def _steps(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", STEPS, mode], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_fewer_page_faults_same_weights() -> None:
    if not keep_freed_memory():
        pytest.skip("no glibc mallopt on this system")
    plain, kept = _steps("plain"), _steps("keep")
    assert kept["kept"] and not plain["kept"]
    # each step frees and reallocates ~2 MiB gradients (512 pages each); kept, they come back from the heap
    assert plain["faults"] > 1000, plain
    assert kept["faults"] < plain["faults"] / 4, (plain, kept)
    assert kept["sum"] == plain["sum"]
