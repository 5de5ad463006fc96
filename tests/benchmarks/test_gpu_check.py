"""benchmarks/gpu_check.py --tiny on a CPU: the one-line notice, exit 0, and a report whose parts are all there
and agree with one another and with the configs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from secret_moe.plan import distill_runs, resolve_variants

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO / "src")}  # the CPU fallback, always
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), str(out / "report"), "--tiny"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, json.loads((out / "report" / "gpu_check.json").read_text())


def test_without_cuda_it_says_so_in_one_line_and_runs_the_cpu_parts(check):
    stdout, report = check
    notices = [line for line in stdout.splitlines() if line.startswith("no CUDA device:")]
    assert stdout.startswith("no CUDA device: skipping the CUDA tests") and len(notices) == 1
    assert report["size"] == "tiny" and report["cuda"] is None and report["cuda_tests"] is None
    assert set(report["bounds"]) == {"float32", "bfloat16"}
    assert all(b["matmul_gflops"] > 0 and b["copy_gbs"] > 0 for b in report["bounds"].values())
    steps = {(r["student"], r["precision"]): r for r in report["steps"]}
    assert len(steps) == 4 and {s for s, _ in steps} == {"mlp_h8", "moe_lowrank_r8_m256_s4_k4"}
    for row in steps.values():
        assert row["samples_per_s"] > 0 and 0 < row["matmul_share"] and 0 < row["bandwidth_share"]
        assert row["ms_per_step"] == pytest.approx(128 / row["samples_per_s"] * 1e3)


def test_the_bundle_is_the_default_configs_and_trains_in_each_precision(check):
    _, report = check
    distill = yaml.safe_load((REPO / "config.yaml").read_text())["distill"]
    rank = yaml.safe_load((REPO / "config.yaml").read_text())["models"]["gemma3-270m"]["router_rank"]
    students = [f"mlp_h{w}" for w in distill["mlp_widths"]] + [
        f"moe_{router}_r{rank}_m{m}_s{k}_k{k}"
        for router in distill["moe"]["routers"]
        for m in distill["moe"]["experts"]
        for k in distill["moe"]["k"]
    ]
    assert sorted(report["bundle"]) == sorted(f"{s}_lr{lr}" for s in students for lr in distill["learning_rates"])
    assert [(b["device"], b["precision"]) for b in report["bundles"]] == [("cpu", "float32"), ("cpu", "bfloat16")]
    for bundle in report["bundles"]:
        assert sorted(bundle["runs"]) == sorted(report["bundle"])
        for run in bundle["runs"].values():
            assert (
                len(run["val_fvu"]) == 2 and run["final_fvu"] == run["val_fvu"][-1] and math.isfinite(run["final_fvu"])
            )
        assert min(run["final_fvu"] for run in bundle["runs"].values()) < 0.8  # the students learn the teacher
    (check_,) = report["agreement"]
    float32, bfloat16 = (b["runs"] for b in report["bundles"])
    worst = max(abs(bfloat16[r]["final_fvu"] / float32[r]["final_fvu"] - 1) for r in float32)
    assert check_["max_relative_difference"] == pytest.approx(worst)
    assert check_["agree"] == (worst <= check_["tolerance"]) and check_["agree"] and check_["kind"] == "precision"


def test_the_projection_counts_the_paper_configs_runs(check, schema_defaults):
    _, report = check
    paper = schema_defaults(yaml.safe_load((REPO / "config" / "paper.yaml").read_text()))
    resolve_variants(paper)
    runs = distill_runs(paper)
    projection = report["paper_projection"]
    assert projection["runs"] == len(runs) and projection["run_epochs"] == sum(r["epochs"] for r in runs)
    assert projection["gpu_hours"] > 0 and math.isfinite(projection["gpu_hours"])
    assert set(projection["share_of_roofline"]) == {"mlp", "moe"}
