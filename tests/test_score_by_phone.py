"""scripts/score_by_phone.py: test scores split by where each test scan's phone was seen."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import small_tables, write_folder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import score_by_phone  # noqa: E402


@pytest.fixture
def grouped(tmp_path):
    """A small grouped split: users 0 and 2 on phone 13, users 1 and 3 on phone 7; the test scans
    on phones 13, 7 and 5 (never in trainingData)."""
    from tinyloc_tf.data import load_prepared
    from tinyloc_tf.data.uji import prepare_uji

    train, test = small_tables()
    train["PHONEID"] = np.where(train["USERID"] % 2 == 0, 13, 7)
    test["PHONEID"] = [13, 7, 5, 5, 13, 7, 5, 5]
    path = prepare_uji(write_folder(tmp_path / "raw", train, test), tmp_path / "out", areas=4, split="grouped",
                       val_fraction=0.25)
    return load_prepared(path), test


def test_each_test_scan_is_grouped_by_where_its_phone_was_seen(grouped):
    data, test = grouped
    groups = score_by_phone.phone_groups(data)
    per_phone = data.meta["uji"]["scans_per_phone"]  # what prepare recorded, read another way
    train_phones, val_phones = ({int(name[1:]) for name in per_phone[split]} for split in ("train", "val"))
    expected = [0 if p in train_phones else 1 if p in val_phones else 2 for p in test["PHONEID"]]
    assert groups.tolist() == expected
    assert groups.tolist().count(2) == 4  # phone 5: in neither


def test_scores_by_group_count_and_score_each_group():
    y = np.array([0, 1, 1, 2, 2, 0])
    predicted = np.array([0, 1, 0, 2, 2, 0])
    groups = np.array([0, 0, 1, 1, 2, 2])
    rows = score_by_phone.scores_by_group(y, predicted, groups)
    assert [n for _, _, n in rows] == [6, 2, 2, 2]
    assert rows[0][0] == pytest.approx(100 * 5 / 6) and rows[1][0] == 100.0 and rows[2][0] == 50.0


def test_main_prints_one_row_per_model_and_names_a_bad_spec(grouped, monkeypatch, capsys):
    from tinyloc_tf.errors import TinylocError

    data, _ = grouped
    monkeypatch.setattr(sys, "argv", ["score_by_phone.py", "--data", str(data.path),
                                      "--logistic-regression", f"{data.path}:1"])
    assert score_by_phone.main() == 0
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert len(table) == 3 and "refit" in table[2] and "(8)" in table[0]
    monkeypatch.setattr(sys, "argv", ["score_by_phone.py", "--data", str(data.path),
                                      "--logistic-regression", f"{data.path}:big"])
    with pytest.raises(TinylocError, match="expected DIR:C"):
        score_by_phone.main()
    from tinyloc_tf.errors import script_status

    assert script_status(score_by_phone.main, "score_by_phone") == 2  # as the command line runs it: one line, status 2
    assert "score_by_phone: error: --logistic-regression" in capsys.readouterr().err
