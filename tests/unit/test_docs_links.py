"""The documentation's relative links resolve: every ``[text](target)`` in README.md, ``docs/*.md`` and
``deploy/**/*.md`` that is not a web address names a file of the checkout, and its ``#anchor`` a heading there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6} (.+)$", re.M)
FENCED = re.compile(r"```.*?```", re.S)
PAGES = sorted({ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "deploy").rglob("*.md")})


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation but ``-`` and ``_`` dropped, spaces as ``-``."""
    text = FENCED.sub("", page.read_text())
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in HEADING.findall(text)}


def test_anchor_rule():
    assert re.sub(r"[^\w\- ]", "", "REST API (`/v1`, OpenAPI at `/docs`)".lower()).replace(" ", "-") == (
        "rest-api-v1-openapi-at-docs"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path):
    for target in LINK.findall(FENCED.sub("", page.read_text())):
        if re.match(r"[a-z]+://|mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(ROOT)}: {target}"
        assert linked.exists(), f"{where}: no such file"
        if anchor:
            assert linked.suffix == ".md", f"{where}: an anchor into a file that is not markdown"
            assert anchor in anchors(linked), f"{where}: no heading with that anchor"
