"""Every key described once: each property of config/schema.yaml has a description, each key config.yaml and
config/verdict.yaml set has a comment, and a key the config's mode ignores is refused rather than kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from secret_moe.errors import ConfigError
from secret_moe.plan import check_config

REPO = Path(__file__).resolve().parents[2]
COMMENTED_CONFIGS = ["config.yaml", "config/verdict.yaml", "config/smollm2.yaml"]


def schema_properties(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted name, schema) of every entry of a `properties` mapping at any depth, skipping `if` conditions
    (which name keys, not define them); entries under `additionalProperties` (a model's keys) are named after
    their parent."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for name, spec in value.items():
                    yield f"{prefix}{name}", spec
                    yield from schema_properties(spec, f"{prefix}{name}.")
            elif key != "if":
                yield from schema_properties(value, prefix)
    elif isinstance(node, list):
        for value in node:
            yield from schema_properties(value, prefix)


def leaf_keys(node: yaml.MappingNode, prefix: str = "") -> Iterator[tuple[str, yaml.Node, yaml.Node]]:
    """(dotted name, key node, value node) of every key whose value is no mapping, in a composed YAML document."""
    for key, value in node.value:
        if isinstance(value, yaml.MappingNode):
            yield from leaf_keys(value, f"{prefix}{key.value}.")
        else:
            yield f"{prefix}{key.value}", key, value


def uncommented(text: str) -> list[str]:
    """The leaf keys of a YAML document with no comment after their value nor on a comment line just above."""
    lines = text.splitlines()
    missing = []
    for name, key, value in leaf_keys(yaml.compose(text)):
        after = lines[value.end_mark.line][value.end_mark.column :]
        above = lines[key.start_mark.line - 1].strip() if key.start_mark.line else ""
        if not after.strip().startswith("#") and not above.startswith("#"):
            missing.append(name)
    return missing


def test_every_schema_property_has_a_description():
    properties = list(schema_properties(yaml.safe_load((REPO / "config/schema.yaml").read_text())))
    assert len(properties) > 100  # the walk found the nested sections, not only the top level
    assert [name for name, spec in properties if not str(spec.get("description", "")).strip()] == []


def test_the_check_finds_an_uncommented_key_and_accepts_both_comment_places():
    text = "a:                # a section\n  b: 1            # said after\n  # said above\n  c: [1, 2]\n  d: x\n"
    assert uncommented(text) == ["a.d"]
    assert uncommented("e: '# not a comment'\n") == ["e"]


@pytest.mark.parametrize("path", COMMENTED_CONFIGS)
def test_every_key_a_shipped_config_sets_is_commented(path):
    assert uncommented((REPO / path).read_text()) == []


def ladder(config: dict[str, Any]) -> dict[str, Any]:
    config["distill"]["schedule"] = {"kind": "wsd", "cooldown_fraction": 0.5, "rungs": 2}
    return config


@pytest.mark.parametrize("key", [("factor", 2), ("seeds", [0])])
def test_under_a_ladder_the_longer_budgets_keys_are_refused_by_name(workflow_config, schema_defaults, key):
    workflow_config["experiments"]["budget_check"] = {"enabled": True, "tolerance": 0.03, key[0]: key[1]}
    config = schema_defaults(ladder(workflow_config))
    with pytest.raises(ConfigError, match=f"experiments.budget_check: {key[0]} would be ignored under a budget ladder"):
        check_config(config)


def test_under_a_ladder_a_disabled_check_refuses_them_too(workflow_config, schema_defaults):
    workflow_config["experiments"]["budget_check"] = {"enabled": False, "factor": 2, "seeds": [0]}
    with pytest.raises(ConfigError, match="factor and seeds would be ignored"):
        check_config(schema_defaults(ladder(workflow_config)))


def test_without_a_ladder_an_enabled_check_needs_both_keys(workflow_config, schema_defaults):
    workflow_config["experiments"]["budget_check"] = {"enabled": True, "seeds": [0]}
    with pytest.raises(ConfigError, match="without a budget ladder the check needs factor"):
        check_config(schema_defaults(workflow_config))
    workflow_config["experiments"]["budget_check"] = {"enabled": False}
    check_config(schema_defaults(workflow_config))  # a check that is off needs neither


def test_the_schema_fills_in_neither_key(workflow_config, schema_defaults):
    """No default could serve both modes, so the schema gives none: a ladder's config stays without them."""
    workflow_config["experiments"]["budget_check"] = {"enabled": True}
    config = schema_defaults(ladder(workflow_config))
    assert config["experiments"]["budget_check"] == {"enabled": True, "tolerance": 0.03}
    check_config(config)


@pytest.mark.parametrize("path", ["config.yaml", "config/verdict.yaml", "config/paper.yaml", "config/scan.yaml"])
def test_the_shipped_budget_checks_set_exactly_the_keys_of_their_mode(path):
    config = yaml.safe_load((REPO / path).read_text())
    rungs = config["distill"].get("schedule", {}).get("rungs", 1)
    check = config["experiments"]["budget_check"]
    assert ({"factor", "seeds"} <= set(check)) == (rungs == 1) and not ({"factor", "seeds"} & set(check) and rungs > 1)


def test_the_second_teacher_runs_the_decisive_recipe_and_rule():
    """config/smollm2.yaml differs from config/verdict.yaml only in its teacher and in having no padding control."""
    verdict = yaml.safe_load((REPO / "config/verdict.yaml").read_text())
    second = yaml.safe_load((REPO / "config/smollm2.yaml").read_text())
    assert list(second["models"]) == ["smollm2-135m"] and second["models"]["smollm2-135m"]["layers"] == [15]
    assert "padding_controls" not in second
    for key in set(verdict) | set(second):
        if key not in ("models", "padding_controls"):
            assert second.get(key) == verdict.get(key), key
