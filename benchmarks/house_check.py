"""House check of the package's structure: import cycles, upward imports and long functions.

    python benchmarks/house_check.py [--package src/secret_moe] [--functions src benchmarks] [--top 10]

(a) Import cycles between the modules of the package, imports inside functions included (a cycle hidden in a
function is still a cycle: the two modules cannot be understood, tested or moved apart).
(b) Upward imports: `LAYERS` below orders the package from its foundations (level 0) to its entry points (the top);
a module may import modules of its own level or below, never above.  A module missing from the table is an error
too, so that a new module is placed on purpose.
(c) The longest functions in the given folders; a function over `MAX_LINES` lines under the package fails the
check (benchmarks are reported, not failed: their `main`s are held to the same limit by review).

Exit 1 if anything fails, else 0.  `--layers none` checks cycles and lengths only (used on synthetic packages).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 60

# The package's layers, lowest first, derived from its import graph (each module imports only modules of its own
# level or below).  Names are module paths without the `secret_moe.` prefix; "students.*" stands for every module of
# the sub-package whose name is not listed on its own.
LAYERS: list[tuple[str, list[str]]] = [
    (
        "foundations",
        [
            "__init__",
            "errors",
            "precision",
            "logs",
            "memory",
            "scheduler_timer",
            "workflow_rules",
            "layout",
            "provenance",
            "device",
        ]
        + ["schema", "schedule", "rows", "cache", "corpus", "batches", "checkpoint"],
    ),
    (
        "stores and tables",
        ["store_check", "store", "tokenise", "dvc_yaml", "input_stats", "aggregate", "remaining"] + ["verdict"],
    ),
    ("models and students", ["models.*", "students.*"]),
    ("computation", ["settings", "capture", "gaussian", "fvu_by_kind", "train", "train_reference", "families"]),
    ("planning, scan and figures", ["plan", "config", "targets", "figures", "scan.*", "testing"]),
    ("entry points", ["steps.*", "restore", "cli"]),
]


@dataclass(frozen=True)
class Function:
    """One function (or method) definition and its length in source lines, decorators excluded."""

    path: Path
    line: int
    name: str
    lines: int


def module_name(path: Path, package: Path) -> str:
    """`secret_moe.students.moe` for src/secret_moe/students/moe.py; a package's __init__ keeps its package name."""
    parts = [package.name, *path.relative_to(package).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def modules(package: Path) -> dict[str, Path]:
    """Every module of the package by its dotted name."""
    return {module_name(path, package): path for path in sorted(package.rglob("*.py"))}


def resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a (possibly relative) `from ... import` names."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join([*base, node.module] if node.module else base)


def type_checking(node: ast.If) -> bool:
    """Whether `node` is `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`)."""
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of `tree` but those under `if TYPE_CHECKING:`: imports there never run (they serve annotations
    only, the usual way to name a type without depending on its module), so they make no edge of the graph."""
    pending = [tree]
    while pending:
        node = pending.pop()
        yield node
        if isinstance(node, ast.If) and type_checking(node):
            pending.extend(node.orelse)
        else:
            pending.extend(ast.iter_child_nodes(node))


def imported(tree: ast.AST, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The package's modules a module imports anywhere in its body (functions included, `if TYPE_CHECKING:` blocks
    not): `from a import b` counts as an import of `a.b` when that is a module, else of `a`."""
    found = set()
    for node in runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            source = resolve(node, module, is_package)
            names = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source for alias in node.names]
        else:
            continue
        for name in names:
            # `import a.b.c` of a non-module attribute: the longest prefix that is a module
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    paths = modules(package)
    known = set(paths)
    return {
        name: imported(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py", known)
        for name, path in paths.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def level_of(module: str, package: str, layers: list[tuple[str, list[str]]]) -> int | None:
    """The level of a module in `layers` (an exact name wins over a `sub.*` pattern), None when it is not placed."""
    name = module.removeprefix(package + ".") if module != package else "__init__"
    for exact in (True, False):
        for level, (_, members) in enumerate(layers):
            for member in members:
                if exact and member == name:
                    return level
                if not exact and member.endswith(".*") and (name + ".").startswith(member[:-1]):
                    return level
    return None


def upward_imports(
    graph: dict[str, set[str]], package: str, layers: list[tuple[str, list[str]]]
) -> tuple[list[str], list[str]]:
    """(imports of a module above the importer's level, modules missing from `layers`), as printable lines."""
    missing = sorted(module for module in graph if level_of(module, package, layers) is None)
    upward = []
    for module, targets in sorted(graph.items()):
        own = level_of(module, package, layers)
        for target in sorted(targets):
            other = level_of(target, package, layers)
            if own is not None and other is not None and other > own:
                upward.append(f"{module} ({layers[own][0]}) imports {target} ({layers[other][0]})")
    return upward, missing


def functions(paths: Iterable[Path]) -> Iterator[Function]:
    """Every function definition in the Python files under `paths` (files or folders), nested ones included."""
    for root in paths:
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield Function(path, node.lineno, node.name, (node.end_lineno or node.lineno) - node.lineno + 1)


def shown(path: Path) -> str:
    """A path relative to the repository when it is inside it (shorter lines), else as given."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def report(package: Path, function_paths: list[Path], layers: list[tuple[str, list[str]]] | None, top: int) -> int:
    """Print the three checks and return the number of failures."""
    graph = import_graph(package)
    found = cycles(graph)
    print(f"import graph of {shown(package)}: {len(graph)} modules, {sum(map(len, graph.values()))} imports")
    print(f"import cycles: {len(found)}")
    for cycle in found:
        print("  " + " <-> ".join(cycle))
    failures = len(found)
    if layers is not None:
        upward, missing = upward_imports(graph, package.name, layers)
        print(f"upward imports: {len(upward)}")
        for line in upward:
            print("  " + line)
        print(f"modules missing from the layer table: {len(missing)}")
        for module in missing:
            print("  " + module)
        failures += len(upward) + len(missing)
    everything = sorted(functions(function_paths), key=lambda f: (-f.lines, str(f.path), f.line))
    long = [f for f in everything if f.lines > MAX_LINES and f.path.is_relative_to(package.resolve())]
    print(f"longest functions (limit {MAX_LINES} lines in {shown(package)}):")
    for f in everything[:top]:
        print(f"  {f.lines:4d}  {shown(f.path)}:{f.line} {f.name}")
    print(f"functions over {MAX_LINES} lines in {shown(package)}: {len(long)}")
    for f in long:
        print(f"  {f.lines:4d}  {shown(f.path)}:{f.line} {f.name}")
    return failures + len(long)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, default=REPO / "src" / "secret_moe")
    parser.add_argument("--functions", type=Path, nargs="+", default=[REPO / "src", REPO / "benchmarks"])
    parser.add_argument("--layers", choices=["package", "none"], default="package")
    parser.add_argument("--top", type=int, default=10, help="how many of the longest functions to list")
    args = parser.parse_args(argv)
    package = args.package.resolve()
    failures = report(
        package, [p.resolve() for p in args.functions], LAYERS if args.layers == "package" else None, args.top
    )
    print("house check: " + ("OK" if not failures else f"{failures} problem(s)"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
