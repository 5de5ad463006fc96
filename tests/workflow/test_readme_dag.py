"""The DAG diagram at the top of README.md is the default config's rule graph.

The README draws the transitive reduction of `snakemake figures/all --rulegraph` on `config.yaml` (each rule
linked to the rules that need it directly, and no edge that a path already implies) as a Mermaid flowchart;
this test asks Snakemake for that rule graph (planning only, in a temporary folder) and compares the two edge
sets.  The rules other configs add (the ablations' figures, the one-pass capture) are named in the text.
"""

from __future__ import annotations

import re
from pathlib import Path

from secret_moe.testing import run_snakemake

REPO = Path(__file__).resolve().parents[2]


def readme_edges(text: str) -> set[tuple[str, str]]:
    """Edges of the README's Mermaid block: `a --> b & c --> d` links a to b and c, and b and c to d."""
    block = re.search(r"```mermaid\n(.*?)```", text, re.DOTALL)
    assert block, "README.md has no ```mermaid block"
    edges = set()
    for line in block.group(1).splitlines()[1:]:  # the first line is `flowchart ...`
        groups = [[name.strip() for name in part.split("&")] for part in line.split("-->")]
        for sources, targets in zip(groups, groups[1:], strict=False):
            edges.update((a, b) for a in sources for b in targets if a and b)
    return edges


def rule_graph(dot: str) -> set[tuple[str, str]]:
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', dot, re.MULTILINE))
    return {(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.MULTILINE)}


def transitive_reduction(edges: set[tuple[str, str]]) -> set[tuple[str, str]]:
    children: dict[str, set[str]] = {}
    for a, b in edges:
        children.setdefault(a, set()).add(b)

    def implied(a: str, b: str) -> bool:
        """Whether b is reachable from a through another child of a."""
        seen, todo = set(), [child for child in children[a] if child != b]
        while todo:
            node = todo.pop()
            if node == b:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(children.get(node, ()))
        return False

    return {(a, b) for a, b in edges if not implied(a, b)}


def test_transitive_reduction_drops_only_implied_edges():
    edges = {("a", "b"), ("b", "c"), ("a", "c"), ("c", "d")}
    assert transitive_reduction(edges) == {("a", "b"), ("b", "c"), ("c", "d")}


def snakefile_rules() -> set[str]:
    """Every rule the Snakefile and rules/*.smk define, `use rule ... as NAME` included."""
    text = "\n".join(p.read_text() for p in [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))])
    return set(re.findall(r"^\s*(?:rule|checkpoint) (\w+):", text, re.MULTILINE)) | set(
        re.findall(r"^\s*use rule \w+ as (\w+)", text, re.MULTILINE)
    )


def test_readme_diagram_is_the_default_configs_rule_graph(tmp_path):
    result = run_snakemake(tmp_path, "figures/all", "--rulegraph", configfile=REPO / "config.yaml", timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    graph = rule_graph(result.stdout)
    rules = {rule for edge in graph for rule in edge}
    assert {"prepare_tokenizer", "plot_ladder", "plot_what_fvu_measures", "plot_scan"} <= rules
    assert readme_edges((REPO / "README.md").read_text()) == transitive_reduction(graph)


def test_readme_names_every_rule_its_diagram_leaves_out():
    text = (REPO / "README.md").read_text()
    drawn = {rule for edge in readme_edges(text) for rule in edge}
    # `all`, the default target, only names figures/all, the diagram's target
    left_out = snakefile_rules() - drawn - {"all"}
    assert left_out, "every rule is drawn: drop the sentence naming the others"
    assert {rule for rule in left_out if f"`{rule}`" not in text} == set()
