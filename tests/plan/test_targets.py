"""What the workflow builds for a config (secret_moe.targets), on the real tiny config: the figure targets, which
runs count as finished, the bundles and the values the rules pass, all without Snakemake."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from secret_moe import targets
from secret_moe.config import load_config
from secret_moe.layout import RUN_FILES, TIMING_FILE, member_dir, path
from secret_moe.plan import run_dir
from secret_moe.settings import distill_params

LADDER = {"kind": "wsd", "warmup_epochs": 0, "cooldown_fraction": 0.5, "rungs": 2}
BUNDLE = "e2_seed0_0123abcd"


@pytest.fixture
def config(workflow_config):
    return load_config(workflow_config)


def paper_table(folder: Path, rows: list[tuple[str, int]]) -> Path:
    table = folder / "paper.csv"
    table.write_text("family,model,layer\n" + "".join(f"mlp,{model},{layer}\n" for model, layer in rows))
    return table


def figure(name: str, ext: str = "png", model: str = "tiny", layer: int = 1) -> str:
    return path("figure", model=model, layer=layer, figure=name, ext=ext)


def test_the_figure_targets_of_a_ladder_with_the_budget_check_include_the_ladder_figure(workflow_config, tmp_path):
    workflow_config["distill"]["schedule"] = LADDER
    workflow_config["experiments"]["budget_check"] = {"enabled": True}
    files = targets.all_figure_files(load_config(workflow_config), paper_table(tmp_path, []))
    assert {figure("ladder", "pdf"), figure("ladder", "png")} <= set(files)
    assert path("summary_figure", figure="verdict", ext="png") in files
    assert path("model_figure", model="tiny", figure="scan", ext="pdf") in files


def test_no_ladder_figure_without_a_ladder_or_without_the_budget_check(workflow_config, tmp_path):
    table = paper_table(tmp_path, [])
    assert figure("ladder") not in targets.all_figure_files(load_config(workflow_config), table)  # cosine: no ladder
    workflow_config["distill"]["schedule"] = LADDER
    assert figure("ladder") not in targets.all_figure_files(load_config(workflow_config), table)  # check off


def test_the_paper_comparison_is_drawn_only_where_the_paper_table_covers_the_pretrained_teacher(config, tmp_path):
    uncovered = targets.all_figure_files(config, paper_table(tmp_path, [("local/tiny-gpt-neox", 2)]))
    covered = targets.all_figure_files(config, paper_table(tmp_path, [("local/tiny-gpt-neox", 1)]))
    assert set(covered) - set(uncovered) == {figure("paper_comparison", "pdf"), figure("paper_comparison", "png")}
    config["models"]["tiny"]["init"] = "random"  # the published numbers are of the pretrained teacher
    assert not targets.in_paper(config, {("local/tiny-gpt-neox", 1)}, "tiny", 1)


def test_the_paper_table_is_read_once_per_plan_whatever_the_layers(workflow_config, tmp_path, monkeypatch):
    workflow_config["models"]["tiny"]["layers"] = [0, 1, 2]
    config = load_config(workflow_config)
    reads = []
    read = targets.paper_coverage
    monkeypatch.setattr(targets, "paper_coverage", lambda table: reads.append(table) or read(table))
    files = targets.all_figure_files(config, paper_table(tmp_path, [("local/tiny-gpt-neox", 2)]))
    assert len(reads) == 1
    assert figure("paper_comparison", layer=2) in files and figure("paper_comparison", layer=1) not in files


def write_files(folder: Path, recorded: dict, timing: dict | None) -> None:
    """A run's three files in `folder`, recording `recorded` as its provenance's config (no timing file if None)."""
    folder.mkdir(parents=True)
    (folder / RUN_FILES[0]).write_text(json.dumps({"provenance": {"config": recorded}}))
    (folder / RUN_FILES[1]).write_bytes(b"weights")
    if timing is not None:
        (folder / TIMING_FILE).write_text(json.dumps(timing))


def write_run(run: dict, recorded: dict, bundle: str = BUNDLE, timing: bool = True) -> None:
    """A finished run's files, as collect_run leaves them, recording `recorded` as its provenance's config."""
    write_files(Path(run_dir(run)), recorded, {"bundle": bundle} if timing else None)


@pytest.fixture
def finished_run(config, tmp_path, monkeypatch):
    """The config's first run, finished under the config's current settings (in a fresh working folder)."""
    monkeypatch.chdir(tmp_path)
    run = targets.distill_plan(config).runs[0]
    write_run(run, {"distill": distill_params(config), "seed": config["seed"]})
    return run


def test_a_run_finished_under_the_current_settings_keeps_its_bundle(config, finished_run):
    assert targets.run_finished(config, finished_run) == BUNDLE
    plan = targets.distill_plan(config)
    key = tuple(finished_run[k] for k in ("model", "layer", "data")) + (BUNDLE,)
    assert plan.bundles[key] == [finished_run]  # not put into a new bundle with the unfinished runs
    assert targets.bundle_of_run(plan, {k: str(v) for k, v in finished_run.items()}).endswith(f"/bundles/{BUNDLE}")
    others = [run for members in plan.bundles.values() for run in members if run != finished_run]
    assert len(others) == len(plan.runs) - 1


@pytest.mark.parametrize(
    ("key", "value"), [("group_chunks", 3), ("batch_size", 128), ("in_memory", False), ("precision", "bfloat16")]
)
def test_run_finished_is_none_when_the_recorded_distill_settings_differ(config, finished_run, key, value):
    config["distill"][key] = value
    assert targets.run_finished(config, finished_run) is None


def test_run_finished_is_none_for_another_schedule_or_seed_or_missing_files(config, finished_run, tmp_path):
    config["distill"]["schedule"] = {**config["distill"]["schedule"], "kind": "wsd"}
    assert targets.run_finished(config, finished_run) is None
    config["distill"]["schedule"]["kind"] = "cosine"
    config["seed"] = 1
    assert targets.run_finished(config, finished_run) is None
    config["seed"] = 0
    (Path(run_dir(finished_run)) / TIMING_FILE).unlink()  # collect_run copies the timing before the metrics
    assert targets.run_finished(config, finished_run) is None


def write_bundle(config: dict, members: list[dict], name: str, written: int | None = None) -> Path:
    """A bundle's folder as train_students leaves it (its first `written` runs' files, all by default)."""
    where = {key: members[0][key] for key in ("model", "layer", "data")}
    folder = Path(path("bundle", **where, bundle=name))
    recorded = {"distill": distill_params(config), "seed": config["seed"]}
    for run in members[:written]:
        write_files(member_dir(folder, run), recorded, {"bundle": name, "bundle_size": len(members)})
    return folder


def test_runs_left_in_a_finished_bundle_keep_it_when_some_were_copied_out(config, tmp_path, monkeypatch):
    """Snakemake stopped after copying one run out of a finished bundle: the others are not trained again."""
    monkeypatch.chdir(tmp_path)
    first = targets.distill_plan(config)
    key, members = next((k, m) for k, m in first.bundles.items() if len(m) > 1)
    write_bundle(config, members, key[3])
    write_run(members[0], {"distill": distill_params(config), "seed": config["seed"]}, bundle=key[3])
    again = targets.distill_plan(config)
    assert again.bundles[key] == members and again.bundles == first.bundles
    config["seed"] = 1  # runs of other settings are not taken from it
    assert all(targets.run_finished(config, run) is None for run in members)


def test_a_bundle_cut_off_while_writing_its_runs_is_trained_again(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    key, members = next((k, m) for k, m in targets.distill_plan(config).bundles.items() if len(m) > 1)
    write_bundle(config, members, key[3], written=len(members) - 1)
    assert all(targets.run_finished(config, run) is None for run in members)


def test_the_plan_has_every_run_once_and_its_metrics_are_the_aggregates_input(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = targets.distill_plan(config)
    bundled = [run for members in plan.bundles.values() for run in members]
    assert sorted(map(repr, bundled)) == sorted(map(repr, plan.runs)) and len(plan.runs) == 28
    assert targets.distill_metrics(plan) == [f"{run_dir(run)}/{RUN_FILES[0]}" for run in plan.runs]
    wildcards = {k: str(v) for k, v in plan.runs[0].items()}
    assert targets.run_of(wildcards) == plan.runs[0]  # the types the plan uses, from the wildcards' strings


def test_a_padding_control_uses_its_bases_materialised_files_and_captures_with_its_padding_keys(workflow_config):
    caps = {"train": 100, "validation": 50}
    workflow_config["padding_controls"] = {
        "tiny-padded": {"same_as": "tiny", "batch_lines": 4, "layers": [1], "max_tokens": caps}
    }
    workflow_config["capture"]["one_pass"] = ["tiny"]
    config = load_config(workflow_config)
    tokens = path("tokens", model="tiny", split="train")
    assert targets.resource_path(config, "tokens", "tiny-padded", "train") == tokens
    assert targets.resource_path(config, "model", "tiny-padded") == path("model", model="tiny")
    plain = {"batch_tokens": 512, "window_sequences": 16, "chunk_mb": 1}  # no one_pass: it decides no store
    assert targets.capture_config(config, "tiny") == plain
    padded = {**plain, "keep_padding": True, "padding_batch_lines": 4, "max_tokens": caps}
    assert targets.capture_config(config, "tiny-padded") == padded
    spec = targets.model_spec(config, "tiny")  # what decides the weights: no layers nor router rank
    assert spec == {
        "source": "local",
        "hf_id": "local/tiny-gpt-neox",
        "revision": None,
        "path": workflow_config["models"]["tiny"]["path"],
        "init": "pretrained",
        "dtype": "float32",
    }
    assert targets.model_spec(config, "tiny-padded") == spec  # the same weights


def test_the_data_store_and_scan_targets(workflow_config):
    workflow_config["models"]["tiny"]["layers"] = [2, 0]
    config = load_config(workflow_config)
    assert targets.data_store(config, "gaussian", "train", 3) == path("gaussian", split="train")
    assert targets.data_store(config, "activations", "validation", 3) == path("activations", split="validation")
    assert targets.scan_layers(config, "tiny") == [0, 2]
    assert targets.scan_figure_files(config) == [
        path("model_figure", model="tiny", figure="scan", ext=ext) for ext in ("pdf", "png")
    ]


def test_with_a_draw_per_seed_each_seed_trains_and_validates_on_its_own_gaussian_sample(workflow_config):
    workflow_config["gaussian"] = {"draw_per_seed": True}
    config = load_config(workflow_config)
    for split in ("train", "validation"):
        stores = {targets.data_store(config, "gaussian", split, seed) for seed in (0, 1, 2)}
        assert stores == {path("gaussian_draw", split=split, draw=seed) for seed in (0, 1, 2)}
        # the real side is one store whatever the seed
        assert {targets.data_store(config, "activations", split, seed) for seed in (0, 1)} == {
            path("activations", split=split)
        }
    # every sample of the plan has a seed of its own: the shared ones, and each draw's per split
    seeds = [
        targets.gaussian_seed(config, split, draw) for split in ("train", "validation") for draw in (None, 0, 1, 2)
    ]
    assert len(set(seeds)) == len(seeds)
    assert targets.gaussian_seed(config, "train") == config["seed"] + config["gaussian"]["split_seeds"]["train"]
