"""Shipped model cards and the docs' commands name no absolute path of the machine that made them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tinyloc_tf.reports import card

REPO = Path(__file__).resolve().parents[1]

# an absolute path: a slash-led word of at least two components, not a URL
ABSOLUTE = re.compile(r"(?<![\w.:/])/(?:[\w.-]+/)+[\w.-]*")


def strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def test_model_cards_hold_no_absolute_paths():
    cards = sorted((REPO / "models").glob("*/*.json"))
    assert cards
    for path in cards:
        found = [text for text in strings(json.loads(path.read_text())) if ABSOLUTE.search(text)]
        assert not found, f"{path}: {found[:3]}"


def test_commands_in_the_docs_hold_no_absolute_paths():
    for page in [REPO / "docs" / "shipped_models.md", REPO / "docs" / "results" / "ujiindoorloc" / "COMMAND.md"]:
        found = [line for line in page.read_text().splitlines()
                 if ("tinyloc" in line or "scripts/" in line) and ABSOLUTE.search(line)]
        assert not found, f"{page}: {found[:3]}"


def test_model_cards_record_repository_relative_paths():
    repo = card.REPO
    assert card.repo_relative(repo / "models" / "x") == "models/x"
    assert card.repo_relative(repo.parent / "shared" / "a.zip") == "../shared/a.zip"
    assert card.shell_command("tinyloc", "report", repo.parent / "sweeps" / "s") == "tinyloc report ../sweeps/s"
    assert card.relative_command(f"tinyloc pipeline --work {repo / 'runs'}") == "tinyloc pipeline --work runs"
