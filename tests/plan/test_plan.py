"""The experiment grid a config expands to: exactly the students and distillation jobs it asks for."""

from __future__ import annotations

import pytest

from secret_moe.config import check_renamed_keys
from secret_moe.errors import ConfigError, CorpusError, ModelSourceError
from secret_moe.plan import (
    all_students,
    bundle_index,
    check_config,
    controls,
    distill_runs,
    layers_of,
    model_layers,
    plan_bundles,
    resolve_variants,
    resource_model,
    run_dir,
    students_by_family,
)
from secret_moe.testing import TINY_FAMILIES, TINY_STUDENTS, write_gguf_header


@pytest.fixture
def config(workflow_config, schema_defaults):
    return schema_defaults(workflow_config)


def test_students_by_family_on_the_tiny_config(config):
    assert students_by_family(config, "tiny", 1) == TINY_FAMILIES
    assert all_students(config, "tiny", 1) == TINY_STUDENTS


def test_distill_runs_on_the_tiny_config(config):
    runs = distill_runs(config)
    # 1 model x 1 layer x 2 data x 7 students x 2 learning rates x 1 seed
    assert len(runs) == 28
    expected = {
        ("tiny", 1, data, student, lr, 0)
        for data in ("activations", "gaussian")
        for student in TINY_STUDENTS
        for lr in (0.001, 0.003)
    }
    assert {tuple(run[k] for k in ("model", "layer", "data", "student", "lr", "seed")) for run in runs} == expected
    assert model_layers(config) == [("tiny", 1)]


def test_grid_follows_the_config(config):
    config["distill"]["seeds"] = [0, 1, 2]
    config["distill"]["data"] = ["activations"]
    config["experiments"]["router_rank"]["enabled"] = False
    config["models"]["tiny"]["layers"] = [0, 2]
    students = sorted(set(TINY_STUDENTS) - set(TINY_FAMILIES["router_rank"]))  # main and shared_split
    runs = distill_runs(config)
    assert len(runs) == 2 * 1 * len(students) * 2 * 3
    assert sorted({r["student"] for r in runs}) == students
    assert sorted({r["layer"] for r in runs}) == [0, 2]
    assert sorted({r["seed"] for r in runs}) == [0, 1, 2]


def test_main_grid_skips_sizes_with_more_active_experts_than_experts(config):
    config["distill"]["moe"] = {"routers": ["lowrank", "fullrank"], "experts": [16, 64], "k": [4, 32]}
    main = students_by_family(config, "tiny", 1)["main"]
    assert main == [
        "mlp_h4",
        "mlp_h16",
        "moe_lowrank_r8_m16_s4_k4",
        "moe_lowrank_r8_m64_s4_k4",
        "moe_lowrank_r8_m64_s32_k32",
        "moe_fullrank_m16_s4_k4",
        "moe_fullrank_m64_s4_k4",
        "moe_fullrank_m64_s32_k32",
    ]


def test_check_config_refuses_a_main_grid_whose_moe_sizes_all_have_k_above_m(config):
    config["distill"]["moe"] = {"routers": ["lowrank"], "experts": [16, 32], "k": [64]}
    with pytest.raises(ConfigError) as error:
        check_config(config)
    assert str(error.value).startswith("distill.moe: every MoE size has k > m (k=64 > m=16, k=64 > m=32)")


def test_check_config_warns_about_the_moe_sizes_it_skips(config, caplog):
    config["distill"]["moe"] = {"routers": ["lowrank"], "experts": [16, 64], "k": [4, 32]}
    with caplog.at_level("WARNING", logger="secret_moe.plan"):
        check_config(config)
    assert [record.getMessage() for record in caplog.records] == [
        "distill.moe: skipping the MoE sizes with k > m (k=32 > m=16)"
    ]
    caplog.clear()
    config["distill"]["moe"]["k"] = [4]
    with caplog.at_level("WARNING", logger="secret_moe.plan"):
        check_config(config)
    assert caplog.records == []


def test_optional_families(config):
    config["experiments"]["expert_width"] = {
        "enabled": True,
        "widths": [1, 2],
        "active": 8,
        "experts": 64,
        "router": "lowrank",
    }
    config["experiments"]["num_experts"] = {
        "enabled": True,
        "experts": [64, 256],
        "k": 4,
        "router": "fullrank",
        "product_key_experts": [1024],
    }
    config["experiments"]["router_rank"]["product_key_ranks"] = [8]
    families = students_by_family(config, "tiny", 1)
    assert families["expert_width"] == ["moe_lowrank_r8_m64_s4_k4", "moe_lowrank_r8_m64_s4_k2_e2"]
    assert families["num_experts"] == [
        "moe_fullrank_m64_s4_k4",
        "moe_fullrank_m256_s4_k4",
        "moe_product_key_r8_m1024_s4_k4",
    ]
    assert families["router_rank"] == [
        "moe_lowrank_r4_m64_s4_k4",
        "moe_fullrank_m64_s4_k4",
        "moe_product_key_r8_m64_s4_k4",
    ]


def test_controls_pair_each_control_with_its_base_model(config):
    assert controls(config) == {}
    config["models"]["tiny-random"] = {**config["models"]["tiny"], "init": "random"}
    config["models"]["other-random"] = {**config["models"]["tiny"], "init": "random", "hf_id": "someone/else"}
    config["padding_controls"] = {"tiny-padded": {"same_as": "tiny", "layers": [1], "batch_lines": 8}}
    resolve_variants(config)
    assert config["models"]["tiny-padded"]["keep_padding"] is True
    assert config["models"]["tiny-padded"]["path"] == config["models"]["tiny"]["path"]
    assert resource_model(config, "tiny-padded") == "tiny" and resource_model(config, "tiny-random") == "tiny-random"
    assert {name: pair["base"] for name, pair in controls(config).items()} == {
        "tiny-random": "tiny",
        "tiny-padded": "tiny",
    }
    # controls run the main comparison only
    assert students_by_family(config, "tiny-padded", 1) == {"main": TINY_FAMILIES["main"]}
    check_config(config)


def test_a_variant_of_a_missing_model_is_named(config):
    config["padding_controls"] = {"tiny-padded": {"same_as": "tinny", "layers": [1]}}
    with pytest.raises(ConfigError, match="padding_controls.tiny-padded.same_as: 'tinny'"):
        resolve_variants(config)


def test_layer_sweep_adds_sweep_only_layers(config):
    config["experiments"]["layer_sweep"] = {
        "enabled": True,
        "model": "tiny",
        "layers": [1, 2],
        "mlp_widths": [4],
        "k": [4],
        "experts": 64,
        "router": "lowrank",
    }
    assert layers_of(config, "tiny") == [1, 2]
    assert students_by_family(config, "tiny", 2) == {"layer_sweep": ["mlp_h4", "moe_lowrank_r8_m64_s4_k4"]}
    assert students_by_family(config, "tiny", 1)["layer_sweep"] == ["mlp_h4", "moe_lowrank_r8_m64_s4_k4"]
    runs = distill_runs(config)
    assert len(runs) == 28 + 2 * 2 * 2  # layer 2: 2 data x 2 students x 2 learning rates
    assert {r["student"] for r in runs if r["layer"] == 2} == {"mlp_h4", "moe_lowrank_r8_m64_s4_k4"}


def test_check_config_accepts_the_tiny_config(config):
    check_config(config)


def test_check_config_names_the_student_with_k_above_m(config):
    config["experiments"]["router_rank"]["experts"] = 4
    config["experiments"]["router_rank"]["k"] = [8]
    config["experiments"]["router_rank"]["include_fullrank"] = False  # else a second student with k > m
    with pytest.raises(ConfigError, match="moe_lowrank_r4_m4_s8_k8") as error:
        check_config(config)
    assert "models.tiny" in str(error.value)


def test_check_config_names_a_product_key_student_with_non_square_experts(config):
    config["distill"]["moe"] = {"routers": ["product_key"], "experts": [60], "k": [4]}
    with pytest.raises(ConfigError, match="moe_product_key_r8_m60_s4_k4"):
        check_config(config)


def test_check_config_names_a_missing_source_key(config):
    del config["models"]["tiny"]["path"]
    with pytest.raises(ConfigError, match="'path'"):
        check_config(config)


def test_check_config_names_a_missing_corpus_file(config, tmp_path):
    config["corpus"]["files"]["validation"] = str(tmp_path / "nowhere.txt")
    with pytest.raises(CorpusError, match="nowhere.txt"):
        check_config(config)


def test_runs_of_one_store_seed_and_budget_share_a_bundle(config):
    config["experiments"]["budget_check"] = {"enabled": True, "factor": 2, "seeds": [0], "tolerance": 0.03}
    runs = distill_runs(config)
    assert len(runs) == 28 + 2 * 3 * 2  # the 3 main students again at 4 epochs, 2 data x 2 learning rates
    bundles = plan_bundles(runs, lambda run: None, size=64)
    # one bundle per (data, epochs): every run of it reads the same batches
    assert sorted((key[2], len(members)) for key, members in bundles.items()) == [
        ("activations", 6),
        ("activations", 14),
        ("gaussian", 6),
        ("gaussian", 14),
    ]
    for (model, layer, data, name), members in bundles.items():
        assert {(r["model"], r["layer"], r["data"], r["epochs"], r["seed"]) for r in members} == {
            (model, layer, data, members[0]["epochs"], 0)
        }
        assert name.startswith(f"e{members[0]['epochs']}_seed0_")
    index = bundle_index(bundles)
    assert len(index) == len(runs)
    # the same runs left to train give the same names
    assert plan_bundles(runs, lambda run: None, size=64).keys() == bundles.keys()


def test_bundles_hold_only_unfinished_runs_and_respect_the_size(config):
    runs = [r for r in distill_runs(config) if r["data"] == "activations"]  # 14 runs of one store
    chunks = plan_bundles(runs, lambda run: None, size=4)
    assert sorted(len(m) for m in chunks.values()) == [2, 4, 4, 4]
    # finished runs keep the bundle that trained them; the others are bundled afresh, per chunk
    finished = {(r["student"], r["lr"]): "e2_seed0_old" for r in runs if r["student"] != "mlp_h8"}
    bundles = plan_bundles(runs, lambda run: finished.get((run["student"], run["lr"])), size=64)
    assert len(bundles[("tiny", 1, "activations", "e2_seed0_old")]) == 12
    (new,) = [members for key, members in bundles.items() if key[3] != "e2_seed0_old"]
    assert sorted((r["student"], r["lr"]) for r in new) == [("mlp_h8", 0.001), ("mlp_h8", 0.003)]


def test_run_paths_follow_one_grammar(config):
    run = distill_runs(config)[0]
    expected = f"results/distill/tiny/layer1/{run['data']}/{run['student']}/e2_lr{run['lr']}_seed0"
    assert run_dir(run) == expected


def test_check_config_accepts_a_gguf_file_and_refuses_anything_else_by_name(workflow_config, schema_defaults, tmp_path):
    gguf = write_gguf_header(tmp_path / "tiny.gguf", layers=3)  # its metadata, all the parse-time check reads
    workflow_config["models"]["tiny"].update({"source": "gguf_file", "path": str(gguf)})
    config = schema_defaults(workflow_config)
    check_config(config)
    gguf.write_text("not a model")
    with pytest.raises(ModelSourceError, match=f"models.tiny.path: file '{gguf}' is not a GGUF file"):
        check_config(config)
    del config["models"]["tiny"]["path"]
    with pytest.raises(ConfigError, match="models.tiny: source 'gguf_file' needs the key 'path'"):
        check_config(config)


def test_a_renamed_config_key_is_named_with_its_new_name(config):
    config["extract"] = config.pop("capture")
    with pytest.raises(ConfigError, match="'extract' is now called 'capture'"):
        check_renamed_keys(config)
