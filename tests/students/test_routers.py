"""The router names: one Python constant (ROUTERS) and one schema definition ($defs/router), in agreement."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from snakemake.exceptions import WorkflowError

from secret_moe.students.routers import ROUTERS, build_router

SCHEMA = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


def enums(node: object) -> list[list]:
    """Every `enum` list anywhere in a schema."""
    if isinstance(node, dict):
        return ([node["enum"]] if "enum" in node else []) + [e for value in node.values() for e in enums(value)]
    if isinstance(node, list):
        return [e for value in node for e in enums(value)]
    return []


def test_the_schema_lists_the_routers_once_and_as_the_code_does():
    schema = yaml.safe_load(SCHEMA.read_text())
    assert schema["$defs"]["router"]["enum"] == list(ROUTERS)
    assert [e for e in enums(schema) if set(e) & set(ROUTERS)] == [list(ROUTERS)]  # stated once
    text = SCHEMA.read_text()
    assert text.count('$ref: "#/$defs/router"') == 5  # distill.moe.routers and the four families' router


@pytest.mark.parametrize("name", ROUTERS)
def test_every_listed_router_builds(name):
    router = build_router(name, d_model=4, experts=16, k=2, rank=4)
    scores, idx = router(torch.randn(3, 4))
    assert scores.shape == idx.shape == (3, 2)


@pytest.mark.parametrize(
    "where",
    [
        ("distill", "moe", "routers"),
        ("experiments", "shared_split", "router"),
        ("experiments", "num_experts", "router"),
    ],
)
def test_snakemake_validate_resolves_the_router_reference(workflow_config, schema_defaults, where):
    workflow_config["experiments"]["num_experts"] = {"enabled": True, "experts": [16], "k": 2}
    config = schema_defaults(workflow_config)
    assert config["experiments"]["num_experts"]["router"] == "lowrank"  # the default beside the $ref is set
    section = workflow_config
    for key in where[:-1]:
        section = section[key]
    section[where[-1]] = ["bogus"] if where[-1] == "routers" else "bogus"
    with pytest.raises(WorkflowError) as error:
        schema_defaults(workflow_config)
    assert "'bogus' is not one of ['fullrank', 'lowrank', 'product_key']" in str(error.value)
