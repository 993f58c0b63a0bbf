"""The docs stand on their own: a clone has no `shared/` folder beside it, so no tracked doc
may send a reader there, and every relative link points at a file of the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def tracked_docs() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / line for line in out.splitlines() if line]


DOCS = tracked_docs()


def test_there_are_docs() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in DOCS}
    assert {"README.md", "docs/kpis.md", "docs/contract.md", "docs/clickhouse.md"} <= names


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_doc_points_outside_the_repository(doc: Path) -> None:
    text = doc.read_text()
    assert not re.search(r"(^|[\s`(/.\[])shared/", text), f"{doc} mentions shared/"
    assert "kpi-definitions.md" not in text


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(doc: Path) -> None:
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        assert (doc.parent / path).exists(), f"{doc}: broken link {target}"


def test_kpi_definitions_and_validation_details_link_both_ways() -> None:
    assert "](contract.md)" in (ROOT / "docs" / "kpis.md").read_text()
    assert "](kpis.md)" in (ROOT / "docs" / "contract.md").read_text()
    assert "](docs/kpis.md)" in (ROOT / "README.md").read_text()
