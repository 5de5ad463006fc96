"""benchmarks/house_check.py: the real tree passes (no import cycle, no upward import, no function over 60 lines in
src/), and on a tiny synthetic package it does find a cycle (one made inside a function), a long function and an
upward import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from house_check import LAYERS, cycles, import_graph, upward_imports  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "house_check.py"


def house_check(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False
    )


def synthetic_package(root: Path) -> Path:
    """pkg: `a` imports `b` at the top, `b` imports `a` inside a function (a cycle), `c` imports `a` only for type
    checking (no edge), and `long.long_one` has 62 lines."""
    package = root / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg import b\n")
    (package / "b.py").write_text("def late():\n    from . import a\n\n    return a\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg import a\n")
    body = "".join(f"    x{i} = {i}\n" for i in range(60))
    (package / "long.py").write_text(f"def long_one():\n{body}    return 0\n")
    return package


def test_the_real_tree_passes_with_no_cycle_and_no_upward_import():
    result = house_check()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "import cycles: 0" in result.stdout
    assert "upward imports: 0" in result.stdout
    assert "modules missing from the layer table: 0" in result.stdout


def test_the_entry_points_are_the_top_layer():
    # steps, restore and cli import everything else; nothing may import them
    assert LAYERS[-1][1] == ["steps.*", "restore", "cli"]


def test_a_synthetic_package_with_a_cycle_and_a_long_function_fails(tmp_path):
    package = synthetic_package(tmp_path)
    result = house_check("--package", str(package), "--functions", str(package), "--layers", "none")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "import cycles: 1" in result.stdout
    assert "pkg.a <-> pkg.b" in result.stdout
    assert f"functions over 60 lines in {package}: 1" in result.stdout
    assert "62  " in result.stdout and "long_one" in result.stdout


def test_type_checking_imports_make_no_edge_and_cycles_are_found(tmp_path):
    graph = import_graph(synthetic_package(tmp_path))
    assert graph["pkg.c"] == set()
    assert graph["pkg.b"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b"]]


def test_an_import_of_a_higher_layer_is_upward_and_an_unplaced_module_is_missing():
    graph = {"pkg.low": {"pkg.high"}, "pkg.high": {"pkg.low"}, "pkg.stray": set()}
    upward, missing = upward_imports(graph, "pkg", [("bottom", ["low"]), ("top", ["high"])])
    assert upward == ["pkg.low (bottom) imports pkg.high (top)"]
    assert missing == ["pkg.stray"]
