"""README.md stays short and every relative link of README.md and docs/ reaches a file and heading that exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_readme_is_at_most_200_lines_with_one_delimited_results_section():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert text.count("## Results\n") == 1
    assert text.index("<!-- BEGIN RESULTS") < text.index("## Results\n") < text.index("<!-- END RESULTS -->")


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
