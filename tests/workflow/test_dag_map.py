"""One map of the DAG (secret_moe.layout): the committed dvc.yaml is its output, and both agree with the DAG
that Snakemake builds (every job's outputs inside its stage's outs, every input another stage makes inside its
deps, no dep or out that no job uses)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from secret_moe import layout
from secret_moe.dvc_yaml import render, rule_sources
from secret_moe.testing import run_snakemake, save_tiny_model, tiny_config, write_config, write_tiny_corpus

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_the_committed_dvc_yaml_is_generated_from_the_map():
    committed = (REPO / "dvc.yaml").read_text()
    assert committed == render(REPO), "dvc.yaml is stale: run `python -m secret_moe.dvc_yaml > dvc.yaml`"


def schema_defaults_filled_in(raw: dict, resolved: dict, prefix: str = "") -> list[str]:
    """Keys that the schema's defaults added to `raw` (as dotted paths)."""
    filled = []
    for key, value in resolved.items():
        if not isinstance(raw, dict) or key not in raw:
            filled.append(prefix + key)
        elif isinstance(value, dict):
            filled += schema_defaults_filled_in(raw[key], value, f"{prefix}{key}.")
    return filled


def test_no_schema_default_reaches_a_job_of_config_yaml(schema_defaults):
    """DVC reads the params of dvc.yaml from config.yaml alone: a default that only the schema gives would reach
    the jobs (Snakemake reruns them when it changes) unseen by `dvc status`, so config.yaml writes each one out.
    `resources` (memory and threads) decides where jobs run, not what they write."""
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    resolved = schema_defaults(yaml.safe_load((REPO / "config.yaml").read_text()))
    assert [key for key in schema_defaults_filled_in(raw, resolved) if key != "resources"] == []


def test_the_workflow_files_are_code_of_every_stage():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        deps = (stage.get("do") or stage)["deps"]
        assert {"Snakefile", "rules/common.smk", "src/secret_moe/plan.py"} <= set(deps), name


def test_every_rule_belongs_to_one_stage_and_every_script_is_named_after_its_rule():
    sources = rule_sources(REPO)
    staged = [rule for stage in layout.STAGES.values() for rule in stage.rules]
    assert sorted(staged) == sorted(set(sources) - {"all"})  # each rule once, none forgotten
    # rules made from another with other outputs (`use rule`) run that rule's script
    uses = {"capture_layers": "capture_activations", "sample_gaussian_draw": "sample_gaussian"}
    assert all(script in (None, f"scripts/{uses.get(rule, rule)}.py") for rule, (_, script) in sources.items())


def test_paths_fill_only_the_wildcards_they_have():
    assert layout.path("tokens", split="train") == "results/tokens/{model}/train.zarr"
    assert layout.folder("tokens") == "results/tokens/{model}"
    assert layout.folder("run", per_model=False) == "results/distill"
    assert layout.STAGES["figures"].outs() == ["figures"]  # figures/all lies inside figures
    with pytest.raises(KeyError, match="no wildcard 'layer'"):
        layout.path("tokens", layer=1)
    # a stage is decided by its own config keys and those of everything upstream
    assert layout.config_keys("gaussian") == ["seed", "corpus", "capture", "device", "experiments", "gaussian"]


def dry_run_jobs(workdir: Path, configfile: Path) -> list[dict]:
    """Every job of `snakemake -n --forceall figures/all`: rule, wildcards, inputs and outputs (as listed)."""
    out = run_snakemake(
        workdir, "-n", "--forceall", "figures/all", configfile=configfile, timeout=300, check=True
    ).stdout
    jobs = []
    for block in re.split(r"^(?=(?:local)?rule \w+:)", out, flags=re.MULTILINE)[1:]:
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.MULTILINE))
        jobs.append(
            {
                "rule": re.match(r"(?:local)?rule (\w+):", block).group(1),
                "wildcards": dict(w.split("=", 1) for w in fields.get("wildcards", "").split(", ") if w),
                "input": [_relative(p) for p in fields.get("input", "").split(", ") if p],
                "output": [p for p in fields.get("output", "").split(", ") if p],
            }
        )
    return jobs


def _relative(path: str) -> str:
    return str(Path(path).relative_to(REPO)) if os.path.isabs(path) and Path(path).is_relative_to(REPO) else path


def dvc_stages(project: Path) -> dict[str, dict[str, list[str]]]:
    """The stages DVC expands from dvc.yaml for this project's config.yaml: data deps and outs."""
    subprocess.run([BIN / "dvc", "init", "-q", "--no-scm"], cwd=project, check=True)
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return {
            stage.name: {
                "deps": [d.def_path for d in stage.deps if d.def_path != "config.yaml"],
                "outs": [o.def_path for o in stage.outs],
            }
            for stage in repo.index.stages
        }


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def disagreements(stages: dict[str, dict[str, list[str]]], jobs: list[dict], config: dict) -> list[str]:
    """Where dvc.yaml's stages and the Snakemake DAG disagree (empty when they agree)."""
    groups = layout.stage_groups()
    of_rule = {rule: name for name, stage in groups.items() for rule in stage.rules if name in layout.STAGES}
    controls = set(config.get("padding_controls", {}))

    def stage_of(job: dict) -> str:
        group, model = of_rule[job["rule"]], job["wildcards"].get("model")
        if not groups[group].per_model:
            return group
        return f"{layout.CONTROL_PREFIX if model in controls else ''}{group}@{model}"

    made_by = {out: stage_of(job) for job in jobs if job["rule"] != "all" for out in job["output"]}
    problems, used_deps, used_outs = [], defaultdict(set), defaultdict(set)
    for job in jobs:
        name = stage_of(job)
        if name not in stages:
            problems.append(f"{job['rule']} {job['wildcards']}: no dvc.yaml stage {name}")
            continue
        spec = stages[name]
        for out in job["output"]:
            hits = [o for o in spec["outs"] if _inside(out, o)]
            problems += [f"{name}: output {out} ({job['rule']}) is in none of its outs"] if not hits else []
            used_outs[name].update(hits)
        order_only = [
            layout.folder(kind).format(model=job["wildcards"].get("model"))
            for kind in groups[name.split("@")[0].removeprefix(layout.CONTROL_PREFIX)].order_only
        ]
        for path in job["input"]:
            if made_by.get(path) == name or any(_inside(path, o) for o in order_only):
                continue
            hits = [d for d in spec["deps"] if _inside(path, d)]
            problems += [f"{name}: input {path} ({job['rule']}) is in none of its deps"] if not hits else []
            used_deps[name].update(hits)
    for name, spec in stages.items():
        data = [d for d in spec["deps"] if d.startswith(("results/", "resources/", "reference/"))]
        problems += [f"{name}: dep {d} is read by none of its jobs" for d in data if d not in used_deps[name]]
        problems += [
            f"{name}: out {o} is written by none of its jobs" for o in spec["outs"] if o not in used_outs[name]
        ]
    return problems


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory: pytest.TempPathFactory):
    """A project folder with the committed dvc.yaml and a config that has every stage: two models (one captured in
    one pass), a padding control, every experiment family of the tiny config, a budget ladder."""
    tmp = tmp_path_factory.mktemp("dag")
    (tmp / "corpus").mkdir()
    corpus = write_tiny_corpus(tmp / "corpus", {"train": 300, "validation": 80})
    # each seed its own Gaussian draw (sample_gaussian_draw), the shared sample still described (sample_gaussian)
    gaussian = {"block_rows": 4096, "draw_per_seed": True}
    config = tiny_config(save_tiny_model(tmp / "gpt-neox", "gpt_neox"), corpus, gaussian=gaussian)
    config["models"]["tiny2"] = {**config["models"]["tiny"], "path": str(save_tiny_model(tmp / "llama", "llama"))}
    # two layers of tiny2 in one forward pass (capture_layers), the other models' stores one layer at a time
    config["models"]["tiny2"]["layers"] = [0, 1]
    config["capture"]["one_pass"] = ["tiny2"]
    config["padding_controls"] = {"tiny-padded": {"same_as": "tiny", "batch_lines": 4, "layers": [1]}}
    # a budget ladder of two rungs (1 and 2 epochs), so that the verdict's ladder figure is in the DAG
    config["distill"]["schedule"] = {"kind": "wsd", "cooldown_fraction": 0.5, "rungs": 2}
    config["experiments"]["budget_check"] = {"enabled": True, "tolerance": 0.03}
    project = tmp / "project"
    project.mkdir()
    write_config(project / "config.yaml", config)
    (project / "work").mkdir()
    return project, config, dry_run_jobs(project / "work", project / "config.yaml")


def _with_dvc_yaml(project: Path, text: str) -> dict[str, dict[str, list[str]]]:
    (project / "dvc.yaml").write_text(text)
    shutil.rmtree(project / ".dvc", ignore_errors=True)
    return dvc_stages(project)


def test_the_dvc_stages_agree_with_the_snakemake_dag(tiny_project):
    project, config, jobs = tiny_project
    stages = _with_dvc_yaml(project, (REPO / "dvc.yaml").read_text())
    assert {"tokens@tiny2", "padded_distill@tiny-padded", "aggregate", "figures"} <= set(stages)
    assert {job["rule"] for job in jobs} >= {rule for s in layout.STAGES.values() for rule in s.rules} - {
        "plot_layer_sweep"  # the tiny config has no layer sweep
    }
    assert disagreements(stages, jobs, config) == []


def test_an_edited_dvc_yaml_disagrees_with_the_dag(tiny_project):
    """The agreement check can fail: a dep removed by hand, and an out moved, are both named."""
    project, config, jobs = tiny_project
    edited = (REPO / "dvc.yaml").read_text()
    spec = yaml.safe_load(edited)["stages"]["gaussian"]["do"]
    assert "results/teacher/${key}" in spec["deps"]
    head, gaussian = edited.split("\n  gaussian:", 1)
    edited = head + "\n  gaussian:" + gaussian.replace("        - results/teacher/${key}\n", "", 1)  # its second dep
    moved = "      outs:\n        - results/tokens/${key}\n"
    assert moved in edited
    edited = edited.replace(moved, "      outs:\n        - results/tokens/${key}/train.zarr\n")  # validation left out
    problems = disagreements(_with_dvc_yaml(project, edited), jobs, config)
    assert "gaussian@tiny: input results/teacher/tiny/layer1 (sample_gaussian) is in none of its deps" in problems
    assert any(p.startswith("tokens@tiny: output results/tokens/tiny/validation.zarr") for p in problems), problems
