"""scripts/ship_models.py: rival sweeps through their results.csv, and budgets not shipped kept."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from tinyloc_tf.errors import TinylocError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import ship_models  # noqa: E402


def _rows(*rows):
    return pd.DataFrame([{"run": run, "variant": variant, "deployable": True, "val_macro_f1": val,
                          "flash_bytes": flash, "arena_bytes": 4000} for run, variant, val, flash in rows])


def test_a_rival_that_wins_on_validation_stops_the_shipping(tmp_path):
    from tinyloc_tf.reports.report import best_over

    ours = _rows(("mlp-H48L1", "int8", 0.78, 31_000), ("mlp-H96L1", "int8", 0.79, 60_000))
    rival = _rows(("mdcsa-H16L1", "qat", 0.76, 29_000), ("mdcsa-H16L1-x2", "int8", 0.80, 54_000),
                  ("mdcsa-H32L1", "float32", 0.99, 29_000))  # float files are never candidates
    path = tmp_path / "results.csv"
    rival.to_csv(path, index=False)
    rivals = ship_models.load_rivals([path])
    best32 = best_over({"ours": ours}, 32)
    ship_models.check_rivals(best32, rivals, 32)  # 0.78 beats the rival's 0.76 under 32 KiB
    best64 = best_over({"ours": ours}, 64)
    with pytest.raises(TinylocError, match=r"64 KiB: the best on validation is mdcsa-H16L1-x2 int8 \(80.00\)"):
        ship_models.check_rivals(best64, rivals, 64)


def test_rivals_must_be_results_files(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("run,variant\nx,int8\n")
    with pytest.raises(TinylocError, match="bad.csv: not a sweep's results.csv"):
        ship_models.load_rivals([bad])
    with pytest.raises(TinylocError, match="missing.csv: cannot read it"):
        ship_models.load_rivals([tmp_path / "missing.csv"])


def test_shipped_budgets_reads_the_cards(tmp_path):
    for name in ("32kb.json", "64kb.json", "32kb.tflite", "notes.json"):
        (tmp_path / name).write_text("{}")
    assert ship_models.shipped_budgets(tmp_path) == [32, 64]
    assert ship_models.shipped_budgets(tmp_path / "absent") == []
