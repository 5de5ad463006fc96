"""README.md stays a short front door whose results table is the committed reference tables', and every
relative link of README.md, docs/, reference/ and the measurement log reaches a file and heading that exist."""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
from readme_results import BEGIN, END, interval_text, readme_block, results_table, rule_text  # noqa: E402

PAGES = [
    REPO / "README.md",
    *sorted((REPO / "docs").glob("*.md")),
    *sorted((REPO / "reference").rglob("README.md")),
    REPO / "benchmarks" / "results" / "README.md",
]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_readme_is_at_most_150_lines_with_one_delimited_results_table():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    assert text.count("## Results\n") == 1 and text.count(BEGIN) == 1 and text.count(END) == 1
    assert text.index("## Results\n") < text.index(BEGIN) < text.index(END)


def test_readme_results_table_is_the_reference_runs_verdicts():
    """Regenerate with `python benchmarks/readme_results.py` after a reference run is redone."""
    assert readme_block((REPO / "README.md").read_text()) == results_table(REPO / "reference")


def test_the_results_table_writes_each_kind_of_interval_as_the_verdict_section_does():
    inf, nan = float("inf"), float("nan")
    assert interval_text(1.1108, 1.0549, 1.1696) == "1.11 [1.05, 1.17]"
    assert interval_text(1.345, 1.2581, inf) == "1.34 [1.26, ∞)"
    assert interval_text(0.8, 0.0, 0.951) == "0.80 (0, 0.95]"
    assert interval_text(1.2607, 0.0, inf) == "1.26 (0, ∞)"
    assert interval_text(1.2, nan, nan) == "1.20"


def test_every_relative_link_reaches_an_existing_file_and_heading():
    broken = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            file, _, anchor = target.partition("#")
            where = (page.parent / file).resolve() if file else page
            if not where.exists() or (anchor and where.is_file() and anchor not in anchors(where)):
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert broken == []


def test_the_results_table_says_which_rule_made_each_row():
    new = {"margin": "0.4417", "max_fvu_change": "0.087", "convergence": "no: x on activations moved 8.7%"}
    assert rule_text(new) == "seeds + training still to come; margin 0.44"
    old = {"max_fvu_change": "0.0544", "convergence": "no: moe_lowrank_r128_m1024_s32_k32 on activations moved 5.4%"}
    assert rule_text(old) == "seeds; previous rule: 3% FVU tolerance (5.4%: MoE, real)"
