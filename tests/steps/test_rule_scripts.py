"""Each rule script imports its step function from the module that defines it, so an editor's go-to-definition and a
static import graph (dvc.yaml's code deps: secret_moe.dvc_yaml) see which step a script runs."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from secret_moe.dvc_yaml import rule_sources

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = sorted({script for _, script in rule_sources(REPO).values() if script})


def _step_imports(script: str) -> list[tuple[str, str]]:
    """(module, name) of each `from secret_moe.steps… import name` in a script."""
    tree = ast.parse((REPO / script).read_text())
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("secret_moe.steps")
        for alias in node.names
    ]


def test_every_rule_script_is_found():
    assert len(SCRIPTS) == len(list((REPO / "scripts").glob("*.py")))


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_rule_script_imports_its_step_from_the_module_defining_it(script):
    (imported,) = _step_imports(script)
    module, name = imported
    assert module != "secret_moe.steps", f"{script}: import {name} from its stage's module, not the package"
    function = getattr(importlib.import_module(module), name)
    assert function.__module__ == module, f"{script}: {name} is defined in {function.__module__}, not {module}"
    assert f"{name}(" in (REPO / script).read_text(), f"{script} imports {name} but does not call it"


def test_the_steps_package_holds_no_registry():
    """`secret_moe.steps` is a plain package: no names resolved lazily through a module `__getattr__`."""
    steps = importlib.import_module("secret_moe.steps")
    assert not hasattr(steps, "__getattr__")
    with pytest.raises(ImportError):
        exec("from secret_moe.steps import plot_verdict", {})
