"""``tinyloc pipeline`` end to end on a small synthetic house and a one-configuration grid."""

from __future__ import annotations

import json

import pytest

from tinyloc_tf.cli import main
from tinyloc_tf.deployment.firmware import missing_tools
from tinyloc_tf.families import get_family


@pytest.mark.slow
def test_pipeline_runs_every_stage_and_resumes(tmp_path, monkeypatch, capfd):
    # One MDCSA and one Mamba, one epoch: the point is the wiring, not the accuracy.
    for family in ("mdcsa", "mamba"):
        monkeypatch.setitem(get_family(family).grids, "tiny", [(4, 1)])
    monkeypatch.delenv("TFLM_ROOT", raising=False)
    work = tmp_path / "work"
    args = ["pipeline", "--work", str(work), "--grid", "tiny", "--epochs", "1", "--jobs", "1", "--ram-kb", "64"]
    assert main(args) == 0
    printed = capfd.readouterr()
    terminal = printed.out + printed.err
    # What TensorFlow prints goes to the sweep's log, not the terminal.
    for noise in ("cpu_feature_guard", "NodeDef mentions", "absl::InitializeLog"):
        assert noise not in terminal, noise
    assert "== deploy ==" in printed.out

    summary = json.loads((work / "summary.json").read_text())
    assert (work / "data" / "meta.json").is_file()
    meta = json.loads((work / "data" / "meta.json").read_text())
    assert meta["synthetic"] is True and meta["T"] == 20
    assert set(summary["teachers"]) == {"mdcsa", "mamba"}
    assert (work / "sweep" / "report.md").is_file()
    for run in ("mdcsa-H4L1", "mamba-H4L1"):
        assert (work / "sweep" / "runs" / run / "variants" / "int8.tflite").is_file()
    # Mamba trains on 60-sample stream windows and gets its int16x8 step model; MDCSA keeps
    # the prepared windows.
    assert (work / "sweep" / "runs" / "mamba-H4L1" / "variants" / "stream-int16x8.json").is_file()
    steps = {run: json.loads((work / "sweep" / "runs" / run / "config.json").read_text())["training"]["recipe"]
             ["train_steps"] for run in ("mdcsa-H4L1", "mamba-H4L1")}
    assert steps == {"mdcsa-H4L1": 0, "mamba-H4L1": 60}

    deploy = summary["deploy"]
    if missing_tools():
        assert "missing" in deploy["skipped"]
    elif "skipped" in deploy:  # no model fits: the reason says so
        assert "fits" in deploy["skipped"]
    else:
        assert deploy["backend"] == "aot"  # no TFLM tree: the AOT backend needs none
        assert deploy["emissions_bit_exact"] is True
        assert deploy["arena_bytes"] <= 64 * 1024
        assert (deploy.get("mode") == "streaming") == deploy["variant"].startswith("stream-")

    # A second call finds every stage done and retrains nothing.
    stamp = (work / "sweep" / "runs" / "mamba-H4L1" / "metrics.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (work / "sweep" / "runs" / "mamba-H4L1" / "metrics.json").stat().st_mtime_ns == stamp


def test_the_device_gets_the_better_of_the_window_and_streaming_picks_on_validation():
    import pandas as pd

    from tinyloc_tf.workflows.pipeline import pick_for_device

    def rows(stream_val):
        return pd.DataFrame([
            {"run": "mdcsa-H8L1", "variant": "int8", "deployable": True, "flash_bytes": 20_000,
             "arena_bytes": 20_000, "val_macro_f1": 0.90, "test_macro_f1": 0.70},
            {"run": "mamba-H8L1", "variant": "stream-int16x8", "deployable": True, "flash_bytes": 12_000,
             "arena_bytes": 14_000, "val_macro_f1": stream_val, "test_macro_f1": 0.60},
            {"run": "mamba-H32L2", "variant": "stream-int16x8", "deployable": True, "flash_bytes": 40_000,
             "arena_bytes": 30_000, "val_macro_f1": 0.99, "test_macro_f1": 0.99},  # does not fit 32 KiB
        ])

    row, streaming = pick_for_device(rows(0.95), 32)
    assert streaming and row["run"] == "mamba-H8L1"
    row, streaming = pick_for_device(rows(0.90), 32)  # a tie goes to the window model
    assert not streaming and row["run"] == "mdcsa-H8L1"
    row, streaming = pick_for_device(rows(0.95), 64)
    assert streaming and row["run"] == "mamba-H32L2"
    assert pick_for_device(rows(0.95), 8) == (None, False)


def test_distillation_with_stream_windows_is_refused_before_any_stage(tmp_path, capsys):
    work = tmp_path / "work"
    assert main(["pipeline", "--work", str(work), "--distill"]) == 2
    assert "distilled students learn their teacher's targets on the prepared windows" in capsys.readouterr().err
    assert not work.exists()
