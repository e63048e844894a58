#!/usr/bin/env python
"""Print the shipped models' table (docs/shipped_models.md, README) from their model cards.

    .venv/bin/python scripts/model_table.py [models/]

One row per card: dataset, budget, model (with its refit or teacher), variant, params,
test macro-F1 / accuracy and the validation macro-F1 it was selected on (the mean over seeds
where ``ship_models.py --seeds-of`` ranked on it) as the card records them, flash and arena.
Every number comes from a card that `tests/test_shipped_models.py` re-evaluates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tinyloc_tf.deployment.streaming import decoding_text


def recipe_flags(recipe: dict | None) -> list[str]:
    """The training flags where a card's recipe differs from today's defaults (fields added to
    ``Recipe`` later read as off, as ``Recipe.from_dict`` reads them)."""
    from tinyloc_tf.training.recipe import Recipe

    return Recipe.from_dict(recipe).changed_flags() if recipe else []


def family_title(name: str) -> str:
    """How the table writes a family: its registered title, or the name as the card has it."""
    from tinyloc_tf.families import FAMILIES

    return FAMILIES.get(name).display_name if name in FAMILIES.names() else name


def row(card: dict) -> str:
    model, test = card["model"], card["metrics"]["test"]
    name = f"{family_title(model['family'])} H{model['hidden']}L{model['layers']}"
    if model.get("ensemble"):
        name += f" x{len(model['ensemble']['members'])} (ensemble of seeds {', '.join(map(str, model['ensemble']['seeds']))})"
    if model.get("distilled_from"):
        name += f" KD ({model['distilled_from']})"
    flags = recipe_flags((model.get("training") or {}).get("recipe"))
    if flags:
        name += f" (`{' '.join(flags)}`)"
    streaming = model.get("streaming")
    if streaming:  # one sample per call, scored over whole streams
        name += f", streaming ({decoding_text(streaming)})"
    if model.get("refit"):
        epochs = model["refit"]["epochs"]  # a list for an ensemble: one count per member
        epochs = " + ".join(map(str, epochs)) if isinstance(epochs, list) else epochs
        name += f", refit on train + val ({epochs} epochs)"
    selection = card["selection"]
    over_seeds = selection.get("over_seeds")  # ranked on the mean over seeds: that is its selection score
    val = (f"{100 * over_seeds['val_macro_f1_mean']:.2f} (mean of seeds {', '.join(map(str, over_seeds['seeds']))})"
           if over_seeds else f"{100 * selection['val_macro_f1']:.2f}")
    return (f"| {card['dataset']} | {card['budget_kb']} KiB | {name} | {model['variant']} | {model['params']:,} | "
            f"{val} | **{100 * test['macro_f1']:.2f}** | "
            f"{100 * test['accuracy']:.2f} | {card['flash_bytes'] / 1024:.1f} | {card['arena_bytes'] / 1024:.1f} |")


def main(argv: list[str]) -> int:
    from tinyloc_tf.errors import TinylocError

    root = Path(argv[0]) if argv else Path("models")
    cards = sorted(root.glob("*/*kb.json"), key=lambda p: (p.parent.name, -int(p.stem[:-2])))
    if not cards:
        raise TinylocError(f"{root}: no model cards (<dataset>/<budget>kb.json) in it")
    print("| dataset | budget | model | variant | params | val macro-F1 (selection) | test macro-F1 | test acc "
          "| flash KiB | arena KiB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for path in cards:
        print(row(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    from tinyloc_tf.errors import script_status

    raise SystemExit(script_status(main, "model_table", sys.argv[1:]))
