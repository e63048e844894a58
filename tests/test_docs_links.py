"""Every relative link in the README and the docs reaches a file, and every ``#anchor`` a heading.

Anchors follow GitHub's rule for heading ids: the heading's text without markup, lower-cased,
punctuation other than ``-`` and ``_`` removed, spaces made hyphens, and ``-1``, ``-2``, ...
after repeats.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)


def blank(match: re.Match) -> str:
    """The match's text as spaces, newlines kept, so line numbers stay right."""
    return re.sub(r"[^\n]", " ", match.group(0))


def heading_slug(text: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its words
    text = re.sub(r"<[^>]+>", "", text.replace("`", ""))
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for match in HEADING.finditer(FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = heading_slug(match.group(1))
        out.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return out


def links(path: Path):
    """``(line, target)`` of every markdown link outside code."""
    text = INLINE_CODE.sub(blank, FENCE.sub(blank, path.read_text(encoding="utf-8")))
    for match in LINK.finditer(text):
        yield text.count("\n", 0, match.start()) + 1, match.group(1)


def test_slug_rule():
    assert heading_slug("Input representation (`--representation powed|dbm|minmax|relative`)") == (
        "input-representation---representation-poweddbmminmaxrelative")
    assert heading_slug("Training on longer windows (`tinyloc train --train-steps N`)") == (
        "training-on-longer-windows-tinyloc-train---train-steps-n")


def test_repeated_headings_are_numbered(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Results\n\n## Results\n\n```\n# not a heading\n```\n", encoding="utf-8")
    assert anchors(page) == {"results", "results-1"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_links_reach_files_and_headings(doc):
    broken = []
    for line, target in links(doc):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not checked offline
            continue
        file_part, _, anchor = target.partition("#")
        destination = (doc.parent / file_part).resolve() if file_part else doc
        if not destination.exists():
            broken.append(f"{doc.relative_to(ROOT)}:{line}: {target} (no such file)")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{doc.relative_to(ROOT)}:{line}: {target} (no such heading)")
    assert not broken, "\n".join(broken)
