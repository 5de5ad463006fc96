"""config/schema.yaml: an enabled experiment family lacking a key its students are built from is refused by the
schema (naming the key), never left to a KeyError in the plan; the shipped configs validate."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError

from secret_moe.plan import check_config, model_layers, students_by_family
from secret_moe.testing import every_family

REPO = Path(__file__).resolve().parents[2]

FAMILIES = every_family()
# The keys students_by_family reads without a default, worked out from plan.py.
REQUIRED = {
    "shared_split": {"active", "shared_fractions", "experts"},
    "router_rank": {"ranks", "experts", "k"},
    "expert_width": {"widths", "active", "experts"},
    "num_experts": {"experts", "k"},
    "layer_sweep": {"model", "layers", "mlp_widths", "k", "experts"},
}


@pytest.fixture
def all_on(workflow_config):
    workflow_config["experiments"] = every_family()
    return workflow_config


def test_the_tiny_config_with_every_family_validates_and_plans(all_on, schema_defaults):
    config = schema_defaults(all_on)
    check_config(config)
    assert set(students_by_family(config, "tiny", 1)) == {"main", *FAMILIES}


@pytest.mark.parametrize(("family", "key"), [(f, k) for f, spec in FAMILIES.items() for k in spec if k != "enabled"])
def test_an_enabled_family_missing_a_key_is_refused_by_the_schema_or_planned(all_on, schema_defaults, family, key):
    """Each key of each family either is required by the schema (refused, naming it) or has a default that
    the plan works with: no key is left to fail as a KeyError."""
    del all_on["experiments"][family][key]
    if key in REQUIRED[family]:
        with pytest.raises(WorkflowError) as error:
            schema_defaults(all_on)
        assert f"'{key}' is a required property" in str(error.value)
        assert family in str(error.value)
    else:
        config = schema_defaults(all_on)
        check_config(config)
        assert family in students_by_family(config, "tiny", 1)


def test_a_disabled_family_needs_no_other_key(workflow_config, schema_defaults):
    workflow_config["experiments"] = {family: {"enabled": False} for family in FAMILIES}
    config = schema_defaults(workflow_config)
    assert set(students_by_family(config, "tiny", 1)) == {"main"}


# every whole config shipped (config/scan.yaml is a budget merged over config.yaml by `secret-moe scan`)
SHIPPED_CONFIGS = ["config.yaml"] + sorted(
    str(p.relative_to(REPO))
    for p in (REPO / "config").glob("*.yaml")
    if p.name != "schema.yaml" and "models" in yaml.safe_load(p.read_text())
)


@pytest.mark.parametrize("path", SHIPPED_CONFIGS)
def test_the_shipped_configs_validate(schema_defaults, path):
    config = schema_defaults(yaml.safe_load((REPO / path).read_text()))
    enabled = {family for family, spec in config["experiments"].items() if spec["enabled"]}
    assert enabled  # the check below plans at least one family or the budget check
    planned = {family for model, layer in model_layers(config) for family in students_by_family(config, model, layer)}
    # the budget check adds no students: it trains the main comparison's again, at a longer budget
    assert planned == {"main", *enabled} - {"budget_check"}
