"""Reports: a hand-made sweep folder (no training), so every number in it is known."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tinyloc_tf.data import Split, write_prepared
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.reports import report

CLASSES = ["B0F0-A00", "B0F0-A01", "B1F0-A00"]
KIB = 1024


def _scores(f1, acc=None):
    return {"macro_f1": f1, "accuracy": f1 if acc is None else acc, "steps": 4,
            "confusion_matrix": [[1, 0, 0], [0, 1, 1], [0, 0, 1]], "agreement_with_keras": 0.9}


def _write(path, payload):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def _run(sweep, name, family, hidden, params, val, test, distilled=False):
    metrics = {"family": family, "hidden": hidden, "layers": 1, "params": params,
               "val_macro_f1": val, "val_accuracy": val, "test_macro_f1": test, "test_accuracy": test,
               "test": _scores(test)}
    if distilled:
        metrics["distill"] = {"teacher_run": "mamba-H32L1", "method": "viterbi"}
    _write(sweep / "runs" / name / "metrics.json", metrics)


def _variant(sweep, run, variant, val, test, flash_kib, arena_kib, deployable=True):
    _write(sweep / "runs" / run / "variants" / f"{variant}.json", {
        "variant": variant, "run": run, "runtime": "tflm" if deployable else "litert", "deployable": deployable,
        "note": None if deployable else "not deployable on TFLM: hybrid ops",
        "flash_bytes": int(flash_kib * KIB), "metadata_bytes": 900,
        "arena_bytes": None if arena_kib is None else int(arena_kib * KIB),
        "val": _scores(val), "test": _scores(test),
    })


@pytest.fixture()
def sweep(tmp_path):
    """A UJI-like (T = 1, area labels) sweep whose validation and test rankings disagree."""
    rng = np.random.default_rng(0)
    splits = {name: Split(rng.uniform(0, 1, (4, 1, 5)).astype(np.float32), np.array([[0], [1], [2], [1]], np.int32))
              for name in ("train", "val", "test")}
    meta = {"dataset": "ujiindoorloc", "features": [f"WAP{i:03d}" for i in range(5)], "classes": CLASSES, "T": 1,
            "scaling": {"min": [-104.0] * 5, "max": [0.0] * 5}, "labels": "area", "source": "toy",
            "source_sha256": "0" * 64}
    data = write_prepared(tmp_path / "data", splits, meta)
    sweep = tmp_path / "sweep"
    _write(sweep / "sweep.json", {"data": str(data), "data_sha256": "ab" * 32, "grid": "small", "family": "both",
                                  "epochs": 5, "patience": 2, "batch_size": 64, "lr": 0.001, "seed": 0,
                                  "int8_friendly": True, "distill_method": "viterbi", "alpha": 0.1})
    # Under 64 KiB: A (best val, worse test) vs B (worse val, best test) -> A.
    _run(sweep, "mamba-H32L1", "mamba", 32, 32_111, val=0.90, test=0.70)
    _variant(sweep, "mamba-H32L1", "int8", val=0.88, test=0.60, flash_kib=50, arena_kib=20)        # A
    _variant(sweep, "mamba-H32L1", "dynamic", val=0.99, test=0.99, flash_kib=40, arena_kib=None,   # host only
             deployable=False)
    _run(sweep, "mdcsa-H16L1", "mdcsa", 16, 21_690, val=0.80, test=0.80)
    _variant(sweep, "mdcsa-H16L1", "int8", val=0.85, test=0.90, flash_kib=40, arena_kib=10)        # B
    # Fits 32 KiB by flash but not by arena: never the 32 KiB pick despite the best val.
    _run(sweep, "mdcsa-H8L1", "mdcsa", 8, 10_562, val=0.70, test=0.70)
    _variant(sweep, "mdcsa-H8L1", "int8", val=0.87, test=0.50, flash_kib=20, arena_kib=33)
    # Fits 32 KiB by arena but not by flash.
    _run(sweep, "mamba-H16L1", "mamba", 16, 16_000, val=0.70, test=0.70)
    _variant(sweep, "mamba-H16L1", "int8", val=0.86, test=0.50, flash_kib=32.5, arena_kib=8)
    # Fits both: the 32 KiB pick.
    _run(sweep, "mamba-H8L1-kd", "mamba", 8, 9_543, val=0.60, test=0.62, distilled=True)
    _variant(sweep, "mamba-H8L1-kd", "int8", val=0.55, test=0.58, flash_kib=28, arena_kib=6)
    _write(sweep / "baselines" / "baselines.json", [
        {"name": "knn", "params": {"n_neighbors": 1}, "val_macro_f1": 0.9, "val_accuracy": 0.9,
         "test_macro_f1": 0.7, "test_accuracy": 0.75, "footprint_bytes": 500 * KIB},
    ])
    return sweep


def test_rows_cover_runs_variants_and_baselines(sweep):
    frame = report.collect_rows(sweep)
    assert len(frame) == 5 + 6 + 1
    keras_row = frame[(frame["run"] == "mamba-H32L1") & (frame["variant"] == "float32")].iloc[0]
    assert keras_row["flash_bytes"] == 4 * 32_111 and not keras_row["deployable"]
    kd = frame[frame["run"] == "mamba-H8L1-kd"]
    assert set(kd["kind"]) == {"distill"} and set(kd["config"]) == {"mamba-H8L1"}
    knn = frame[frame["kind"] == "baseline"].iloc[0]
    assert knn["run"] == "knn" and knn["flash_bytes"] == 500 * KIB


def test_best_per_budget_is_chosen_on_validation(sweep):
    frame = report.collect_rows(sweep)
    best64 = report.best_under(frame, 64)
    # mamba-H32L1 int8 has the best validation F1 of the deployable fits; mdcsa-H16L1 int8
    # is better on test, and the dynamic model is better on both but does not run in TFLM.
    assert (best64["run"], best64["variant"]) == ("mamba-H32L1", "int8")
    assert best64["test_macro_f1"] == 0.60


def test_best_over_sweeps_takes_the_best_validation_score_first_sweep_on_ties(sweep):
    """Sweeps of one dataset with two recipes: the pick is the better validation score of either."""
    frame = report.collect_rows(sweep)
    other = frame.copy()
    other["val_macro_f1"] = other["val_macro_f1"] - 0.01
    key, row = report.best_over({"a": frame, "b": other}, 64)
    assert key == "a" and (row["run"], row["variant"]) == ("mamba-H32L1", "int8")
    other["val_macro_f1"] = other["val_macro_f1"] + 0.02
    assert report.best_over({"a": frame, "b": other}, 64)[0] == "b"
    assert report.best_over({"a": frame, "b": frame.copy()}, 64)[0] == "a"
    assert report.best_over({"a": frame[frame["run"] == "mdcsa-H8L1"]}, 32) is None


def test_seed_mean_ranks_the_mean_over_seeds_and_needs_every_seed(sweep):
    """The same sweep with other seeds: a candidate's score is its mean validation macro-F1,
    so a configuration lucky on one seed no longer wins; one missing from a seed never does."""
    frame = report.collect_rows(sweep)
    assert (report.best_under(frame, 64)["run"], report.best_under(frame, 64)["variant"]) == ("mamba-H32L1", "int8")
    other = frame.copy()
    lucky = (other["run"] == "mamba-H32L1") & (other["variant"] == "int8")
    other.loc[lucky, "val_macro_f1"] -= 0.30
    averaged = report.with_seed_mean(frame, [other, frame.copy()])
    row = averaged[(averaged["run"] == "mamba-H32L1") & (averaged["variant"] == "int8")].iloc[0]
    own = frame.loc[lucky, "val_macro_f1"].iloc[0]
    assert row[report.SEED_MEAN] == pytest.approx(own - 0.10)
    assert row["val_macro_f1_seeds"] == pytest.approx((own, own - 0.30, own))
    assert row["val_macro_f1_seed_sd"] == pytest.approx(np.std([own, own - 0.30, own], ddof=1))
    assert row["val_macro_f1"] == own  # the sweep's own score stays
    best = report.best_under(averaged, 64, score=report.SEED_MEAN)
    assert (best["run"], best["variant"]) != ("mamba-H32L1", "int8")
    assert best[report.SEED_MEAN] == averaged[report.SEED_MEAN][
        averaged["variant"].isin(report.INT8_VARIANTS) & averaged["deployable"].astype(bool)
        & report.fits(averaged, 64)].max()
    # a candidate absent from one seed's sweep is not ranked at all
    missing = report.with_seed_mean(frame, [frame[~((frame["run"] == best["run"]) & (frame["variant"] == best["variant"]))]])
    assert np.isnan(missing.loc[(missing["run"] == best["run"]) & (missing["variant"] == best["variant"]),
                                report.SEED_MEAN].iloc[0])
    pick = report.best_under(missing, 64, score=report.SEED_MEAN)
    assert (pick["run"], pick["variant"]) != (best["run"], best["variant"])


def test_budget_fit_needs_both_flash_and_arena(sweep):
    frame = report.collect_rows(sweep)
    fits32 = report.fits(frame, 32)
    by_run = {(r, v): f for r, v, f in zip(frame["run"], frame["variant"], fits32)}
    assert not by_run[("mdcsa-H8L1", "int8")]  # arena 33 KiB
    assert not by_run[("mamba-H16L1", "int8")]  # flash 32.5 KiB
    assert by_run[("mamba-H8L1-kd", "int8")]
    assert not by_run[("mamba-H32L1", "dynamic")]  # no arena measured: never fits
    best32 = report.best_under(frame, 32)
    assert (best32["run"], best32["variant"]) == ("mamba-H8L1-kd", "int8")
    assert report.best_under(frame[frame["run"] == "mdcsa-H8L1"], 32) is None


def test_streaming_variants_get_their_own_best_rows(sweep):
    """A streaming step model is never the window pick, even with the best validation score;
    the report gives the streaming variants their own marked rows."""
    _variant(sweep, "mamba-H16L1", "stream-int8", val=0.95, test=0.66, flash_kib=12, arena_kib=9)
    _variant(sweep, "mamba-H8L1-kd", "stream-int8", val=0.50, test=0.40, flash_kib=10, arena_kib=8)
    record = sweep / "runs" / "mamba-H16L1" / "variants" / "stream-int8.json"
    payload = json.loads(record.read_text())
    payload["streaming"] = {"decoder": "viterbi", "lag": 10, "reset_every": 50}
    record.write_text(json.dumps(payload))
    frame = report.collect_rows(sweep)
    assert (report.best_under(frame, 64)["run"], report.best_under(frame, 64)["variant"]) == ("mamba-H32L1", "int8")
    best = report.best_under(frame, 32, streaming=True)
    assert (best["run"], best["variant"]) == ("mamba-H16L1", "stream-int8")
    lines = report.write_report(sweep).read_text().splitlines()
    assert any(line.startswith("| 64 KiB | mamba-H32L1 | int8 |") for line in lines)
    streaming = [line for line in lines if "**streaming**" in line]
    assert len(streaming) == 2
    assert all("| mamba-H16L1 | stream-int8 (lag 10, reset every 50) | 95.00 | 66.00 |" in line for line in streaming)
    (sweep / "runs" / "mamba-H16L1" / "variants" / "stream-int8.json").unlink()
    (sweep / "runs" / "mamba-H8L1-kd" / "variants" / "stream-int8.json").unlink()
    assert "**streaming**" not in report.write_report(sweep).read_text()


def test_decoding_text_names_the_decoder_lag_and_resets():
    from tinyloc_tf.deployment.streaming import decoding_text

    assert decoding_text({"decoder": "viterbi", "lag": 10, "reset_every": 50}) == "lag 10, reset every 50"
    assert decoding_text({"lag": 5, "reset_every": None}) == "lag 5, never reset"
    assert decoding_text({"decoder": "filter", "lag": 0, "reset_every": 0}) == "filter, never reset"


def test_report_files_and_paper_numbers(sweep, tmp_path):
    path = report.write_report(sweep)
    assert path == sweep / "report.md"
    for name in ("results.csv", "f1_vs_size.png", "confusion_64kb.png", "confusion_32kb.png"):
        assert (sweep / name).stat().st_size > 0, name
    assert not (sweep / "timeline.png").exists()  # T = 1: no time axis
    text = path.read_text()
    best_rows = [line for line in text.splitlines() if line.startswith("| 64 KiB") or line.startswith("| 32 KiB")]
    assert "mamba-H32L1 | int8 | 88.00 | 60.00" in best_rows[0]
    assert "64.00 | 78.74 | Mamba H8L1 KD" in best_rows[0]  # the paper's UJIIndoorLoc numbers beside ours
    assert "mamba-H8L1-kd | int8" in best_rows[1] and "44.56 | 67.21 | Mamba H4L1" in best_rows[1]
    assert "No timeline" in text and "## Paper-style table, under 32 KiB" in text
    assert "| knn |" in text and "x the flash" in text
    with open(sweep / "results.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 12
    assert not list(sweep.glob(".report.partial-*"))


def test_paper_table_strikes_cells_over_budget(sweep):
    frame = report.collect_rows(sweep)
    table = report.paper_table(frame, 32)
    lines = table.splitlines()
    assert lines[0].startswith("| model | params | Baseline | Static int8 | Dynamic | Distillation | Distill + int8")
    mamba8 = next(line for line in lines if line.startswith("| mamba-H8L1 |"))
    assert "n/a" in mamba8  # no plain-trained H8L1 in this sweep
    assert "58.00 / 58.00 / 28.0 / 6.0 |" in mamba8 and "~~" in mamba8  # KD float32 (37 KiB) is struck
    # nothing of these fits 32 KiB (mdcsa-H8L1 int8: arena 33 KiB, float32 41 KiB): no row
    assert all(not line.startswith(("| mamba-H32L1", "| mdcsa-H8L1")) for line in lines)
    mdcsa8 = next(line for line in report.paper_table(frame, 64).splitlines() if line.startswith("| mdcsa-H8L1 |"))
    assert "| 50.00 / 50.00 / 20.0 / 33.0 |" in mdcsa8 and "| 70.00 / 70.00 / 41.3 / - (float) |" in mdcsa8


def test_report_cli_and_errors(sweep, tmp_path, capsys):
    from tinyloc_tf.cli import main

    assert main(["report", str(sweep), "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.md").is_file()
    assert capsys.readouterr().out.strip() == str(tmp_path / "out" / "report.md")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "no finished runs" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    _write(sweep / "runs" / "mdcsa-H8L1" / "variants" / "int8.json", {"runtime": "tflm"})
    with pytest.raises(TinylocError, match=r"int8\.json: missing field\(s\) deployable, flash_bytes, val, test"):
        report.collect_rows(sweep)


def test_a_cards_sweep_command_is_one_the_command_line_accepts_with_the_same_settings(tmp_path):
    """``card.sweep_command`` rebuilds ``tinyloc sweep`` from sweep.json: switches appear only
    when on (a conversion option, the recipe's ``--shortcut``), and the recipe's ``--ema`` is carried."""
    import shlex

    from tinyloc_tf.cli import build_parser
    from tinyloc_tf.compression.variants import ConvertOptions
    from tinyloc_tf.reports.card import sweep_command
    from tinyloc_tf.training.recipe import Recipe

    for per_tensor, ema, shortcut in ((False, 0.0, False), (True, 0.998, True)):
        options = {**ConvertOptions().to_dict(), "per_tensor_weights": per_tensor}
        settings = {"data": str(tmp_path / "data"), "sweep_dir": str(tmp_path / "sweep"), "family": "both",
                    "grid": "budget", "epochs": 20, "patience": 5, "batch_size": 128, "lr": 0.003, "seed": 0,
                    "int8_friendly": True, "recipe": Recipe(ema=ema, shortcut=shortcut).to_dict(), "distill": False,
                    "distill_method": "viterbi", "alpha": 0.1, "variants": ["int8", "qat"],
                    "convert_options": options, "jobs": 2}
        words = shlex.split(sweep_command(settings))
        args = build_parser().parse_args(words[1:])
        assert args.per_tensor_weights is per_tensor and args.ema == ema and args.shortcut is shortcut
        assert ("--ema" in words) == bool(ema)


def test_report_header_names_the_recipe_flags_that_differ_from_the_defaults():
    from dataclasses import asdict

    from tinyloc_tf.reports.report import _recipe_text
    from tinyloc_tf.training.recipe import Recipe

    assert _recipe_text(asdict(Recipe())) == "recipe: the defaults"
    assert _recipe_text(asdict(Recipe(train_steps=60, ema=0.998))) == \
        "recipe: the defaults but `--ema 0.998`, `--train-steps 60` (mamba runs only)"
    assert "before recipes existed" in _recipe_text(None)


def test_seeds_of_must_be_the_same_sweep_with_another_seed(tmp_path, monkeypatch):
    """over_seeds_frame (tinyloc report / ship_models.py --seeds-of): the same sweep command but
    for its seed, each seed once; the ranking lines show the mean and every seed's score."""
    import pandas as pd

    def rows(h48):
        return pd.DataFrame([{"run": run, "variant": "int8", "deployable": True, "val_macro_f1": val,
                              "flash_bytes": flash, "arena_bytes": 4000}
                             for run, val, flash in (("mlp-H48L1", h48, 31_000), ("mlp-H32L1", 0.78, 22_000))])

    settings = {"data": "d", "seed": 0, "epochs": 100, "recipe": {"gain_db": 20.0}, "convert_options": {"seed": 0}}
    frames = {}
    for name, changes, h48 in [("s0", {}, 0.80), ("s3", {"seed": 3, "convert_options": {"seed": 3}}, 0.70),
                               ("again", {}, 0.80), ("recipe", {"seed": 6, "recipe": {"gain_db": 10.0}}, 0.80)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "sweep.json").write_text(json.dumps({**settings, **changes}))
        frames[tmp_path / name] = rows(h48)
    monkeypatch.setattr(report, "collect_rows", lambda folder: frames[folder])
    frame, seeds = report.over_seeds_frame(tmp_path / "s0", frames[tmp_path / "s0"], [tmp_path / "s3"])
    assert seeds == {tmp_path / "s0": 0, tmp_path / "s3": 3}
    # seed 0 alone ranks H48L1 first; over both seeds H32L1 leads
    assert report.best_under(frame, 32)["run"] == "mlp-H48L1"
    row = report.best_under(frame, 32, score=report.SEED_MEAN)
    assert row["run"] == "mlp-H32L1" and row[report.SEED_MEAN] == pytest.approx(0.78)
    lines = report.seed_ranking_lines(frame, 32)
    assert lines[1] == "  mlp-H32L1 int8: 78.00 ± 0.00: 78.00 78.00"
    assert lines[2] == "  mlp-H48L1 int8: 75.00 ± 7.07: 80.00 70.00"
    with pytest.raises(TinylocError, match="again: seed 0 is already given"):
        report.over_seeds_frame(tmp_path / "s0", frames[tmp_path / "s0"], [tmp_path / "again"])
    with pytest.raises(TinylocError, match=r"recipe: not the sweep of .*s0 with another seed \(recipe:"):
        report.over_seeds_frame(tmp_path / "s0", frames[tmp_path / "s0"], [tmp_path / "recipe"])
    with pytest.raises(TinylocError, match="missing: no sweep.json"):
        report.over_seeds_frame(tmp_path / "s0", frames[tmp_path / "s0"], [tmp_path / "missing"])


def test_report_over_seeds_picks_on_the_mean(sweep, tmp_path):
    """tinyloc report --seeds-of: the best per budget on the mean over the seeds' sweeps."""
    import shutil

    other = tmp_path / "sweep-s3"
    shutil.copytree(sweep, other)
    settings = json.loads((other / "sweep.json").read_text())
    (other / "sweep.json").write_text(json.dumps({**settings, "seed": 3}))
    # seed 3: the seed-0 pick under 64 KiB (mamba-H32L1 int8, 0.88) scores 0.70; the others stay
    record = other / "runs" / "mamba-H32L1" / "variants" / "int8.json"
    variant = json.loads(record.read_text())
    variant["val"]["macro_f1"] = 0.70
    record.write_text(json.dumps(variant))
    text = report.write_report(sweep, tmp_path / "out", seeds_of=[other]).read_text()
    best_64 = next(line for line in text.splitlines() if line.startswith("| 64 KiB"))
    assert "| mdcsa-H8L1 | int8 | 87.00 | 50.00 |" in best_64  # the next best, 87 on both seeds
    assert "  mamba-H32L1 int8: 79.00 ± 12.73: 88.00 70.00" in text
    assert "same sweep with seeds 3 (`--seeds-of`)" in text
    assert "between the mean validation and the mean test macro-F1 of the 11 models and variants every seed has" in text
    frame = report.collect_rows(sweep)
    assert report.best_under(frame, 64)["run"] == "mamba-H32L1"  # on seed 0 alone
