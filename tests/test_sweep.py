"""Sweeps: planning, teacher choice on validation, resumability, compression phase, Ray."""

from __future__ import annotations

import json

import pytest

from helpers import write_toy_dataset
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.families import get_family
from tinyloc_tf.workflows import execute, plan
from tinyloc_tf.workflows import sweep as sweep_module
from tinyloc_tf.workflows.plan import RunSpec

TINY_GRID = {"mamba": [(4, 1), (2, 1)], "mdcsa": [(4, 1)]}
FIT = dict(epochs=2, batch_size=16, lr=0.02, patience=2, seed=1)
TIMING = {"fit_seconds", "seconds_per_epoch", "wall_time_s"}


def use_tiny_grid(patch):
    """Add the "tiny" grid to the registered families for the length of a test."""
    for family, configs in TINY_GRID.items():
        patch.setitem(get_family(family).grids, "tiny", configs)

# --------------------------------------------------------------------------- planning (no TF)


@pytest.mark.parametrize(
    "family, features, classes, hidden, layers, expected",
    [
        ("mdcsa", 8, 4, 16, 1, 8_988),
        ("mdcsa", 520, 59, 256, 3, 7_439_690),
        ("mdcsa", 11, 11, 8, 1, 2_602),
        ("mamba", 8, 4, 32, 4, 40_248),
        ("mamba", 520, 59, 8, 1, 9_543),
        ("mamba", 11, 9, 64, 4, 132_259),
        ("mamba", 520, 59, 2, 1, 5_013),
    ],
)
def test_param_formulas_match_models_md(family, features, classes, hidden, layers, expected):
    assert plan.param_count(family, features, classes, hidden, layers) == expected


def test_plan_respects_grid_and_max_params():
    specs = plan.plan_baseline_runs(("mamba",), "paper", 520, 59, None)
    assert len(specs) == 24 and all(spec.teacher is None for spec in specs)
    small = plan.plan_baseline_runs(("mdcsa", "mamba"), "small", 520, 59, 10_000)
    assert [s.name for s in small] == ["mdcsa-H4L1", "mamba-H8L1", "mamba-H4L1"]
    assert all(plan.param_count(s.family, 520, 59, s.hidden, s.layers) <= 10_000 for s in small)
    with pytest.raises(TinylocError, match="unknown grid"):
        plan.plan_baseline_runs(("mamba",), "huge", 8, 4, None)
    with pytest.raises(TinylocError, match="unknown --family"):
        plan.check_families("lstm")


def test_check_families_takes_a_name_a_list_both_or_all():
    assert plan.check_families("mlp") == ("mlp",)
    assert plan.check_families("mamba, MLP,mamba") == ("mamba", "mlp")
    assert plan.check_families("both") == ("mdcsa", "mamba")
    assert set(plan.check_families("all")) >= {"mdcsa", "mamba", "mlp"}
    with pytest.raises(TinylocError, match="unknown --family 'gru'"):
        plan.check_families("mlp,gru")
    with pytest.raises(TinylocError, match="unknown --family"):
        plan.check_families(" , ")


def test_parse_variants():
    assert plan.parse_variants("int8, dynamic,int8") == ("int8", "dynamic")
    assert plan.parse_variants("none") == () and plan.parse_variants("") == ()
    with pytest.raises(TinylocError, match="float32 model is the run itself"):
        plan.parse_variants("float32")
    with pytest.raises(TinylocError, match="'int4'"):
        plan.parse_variants("int8,int4")


def _metrics(family, params, val, test, distilled=False):
    m = {"family": family, "params": params, "val_macro_f1": val, "test_macro_f1": test}
    return {**m, "distill": {"teacher_run": "x"}} if distilled else m


def test_teacher_is_picked_on_validation_never_test():
    results = {
        "mamba-H32L1": _metrics("mamba", 32_000, val=0.70, test=0.95),  # best on test
        "mamba-H16L1": _metrics("mamba", 16_000, val=0.80, test=0.60),  # best on validation
        "mamba-H8L1": _metrics("mamba", 9_000, val=0.80, test=0.50),    # tie on val: fewer params wins
        "mamba-H4L1-kd": _metrics("mamba", 6_000, val=0.99, test=0.99, distilled=True),  # students never teach
        "mdcsa-H16L1": _metrics("mdcsa", 21_000, val=0.90, test=0.10),
    }
    assert plan.pick_teacher(results, "mamba") == "mamba-H8L1"
    assert plan.pick_teacher(results, "mdcsa") == "mdcsa-H16L1"
    assert plan.pick_teacher({}, "mamba") is None


def test_students_are_smaller_configurations_of_the_teachers_family():
    specs = [RunSpec("mamba", 32, 1), RunSpec("mamba", 16, 1), RunSpec("mamba", 8, 1), RunSpec("mdcsa", 4, 1)]
    results = {
        "mamba-H32L1": _metrics("mamba", 32_000, 0.7, 0.7), "mamba-H16L1": _metrics("mamba", 16_000, 0.8, 0.8),
        "mamba-H8L1": _metrics("mamba", 9_000, 0.6, 0.6), "mdcsa-H4L1": _metrics("mdcsa", 1_000, 0.5, 0.5),
    }
    students = plan.plan_students(specs, results, "mamba-H16L1")
    assert [s.name for s in students] == ["mamba-H8L1-kd"]
    assert students[0].teacher == "mamba-H16L1"


def _boom(argument, settings):
    if argument == "bad":
        raise ValueError("exploded")
    return {"ok": argument}


def test_failed_tasks_are_named_and_finished_ones_kept():
    with pytest.raises(TinylocError, match=r"1 of 2 tasks failed.*b: ValueError: exploded"):
        execute.run_tasks(_boom, [("a", "good"), ("b", "bad")], {}, jobs=1, desc="test")
    assert execute.run_tasks(_boom, [("a", "good")], {}, jobs=1, desc="test") == {"a": {"ok": "good"}}


def test_bad_arguments_fail_before_training(tmp_path):
    data = write_toy_dataset(tmp_path / "toy")
    with pytest.raises(TinylocError, match="distill-method"):
        sweep_module.sweep(data, tmp_path / "s", distill_method="magic")
    with pytest.raises(TinylocError, match="at most 10 parameters"):
        sweep_module.sweep(data, tmp_path / "s", max_params=10)
    # A streaming variant no run can have: MDCSA only, or scans without a time axis.
    with pytest.raises(TinylocError, match="--quant stream-int8: no run of this sweep can have it"):
        sweep_module.sweep(data, tmp_path / "s", family="mdcsa", variants="int8,stream-int8")
    scans = write_toy_dataset(tmp_path / "scans", steps=1)
    with pytest.raises(TinylocError, match="T = 1; streaming variants need Mamba runs on windows"):
        sweep_module.sweep(scans, tmp_path / "s", variants="stream-int16x8")
    assert not (tmp_path / "s" / "runs").exists()


# --------------------------------------------------------------------------- a real tiny sweep


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("data") / "toy")


@pytest.fixture(scope="module")
def tiny_sweep(toy, tmp_path_factory):
    """Mamba H4L1 and H2L1 trained, the better (on val) distilled into the smaller, each
    run converted to int8 and dynamic and scored - in-process (jobs=1). The classical
    baselines have their own tests; here only their call is checked (resume test)."""
    out = tmp_path_factory.mktemp("sweeps") / "tiny"
    with pytest.MonkeyPatch.context() as patch:
        use_tiny_grid(patch)
        result = sweep_module.sweep(toy, out, family="mamba", grid="tiny", variants=("int8", "dynamic"),
                                    baselines=False, **FIT)
    return out, result


@pytest.mark.slow
def test_sweep_trains_picks_teacher_on_val_and_distils_smaller(tiny_sweep):
    out, result = tiny_sweep
    runs = result["runs"]
    assert set(runs) == {"mamba-H4L1", "mamba-H2L1", "mamba-H2L1-kd"} or set(runs) == {"mamba-H4L1", "mamba-H2L1"}
    baseline_runs = {name: m for name, m in runs.items() if not name.endswith("-kd")}
    teacher = result["teachers"]["mamba"]
    assert runs[teacher]["val_macro_f1"] == max(m["val_macro_f1"] for m in baseline_runs.values())
    teachers = json.loads((out / "teachers.json").read_text())
    assert teachers["mamba"]["run"] == teacher
    for name, metrics in runs.items():
        assert (out / "runs" / name / "model.keras").is_file()
        if name.endswith("-kd"):
            assert metrics["distill"]["teacher_run"] == str(out / "runs" / teacher)
            assert metrics["params"] < runs[teacher]["params"]
    # the teacher is whichever is better on val; H2 always has fewer parameters than H4
    if teacher == "mamba-H4L1":
        assert "mamba-H2L1-kd" in runs
    settings = json.loads((out / "sweep.json").read_text())
    assert settings["variants"] == ["int8", "dynamic"] and settings["epochs"] == FIT["epochs"]
    assert not (out / "baselines").exists()


@pytest.mark.slow
def test_compression_phase_writes_scored_variants(tiny_sweep, toy):
    from tinyloc_tf.compression.convert import op_table
    from tinyloc_tf.data import load_prepared

    out, result = tiny_sweep
    data = load_prepared(toy)
    assert set(result["variants"]) == set(result["runs"])
    for name in result["runs"]:
        folder = out / "runs" / name / "variants"
        int8 = json.loads((folder / "int8.json").read_text())
        dynamic = json.loads((folder / "dynamic.json").read_text())
        assert (folder / "int8.tflite").is_file() and (folder / "dynamic.tflite").is_file()
        assert int8["runtime"] == "tflm" and int8["deployable"] is True and int8["arena_bytes"] > 0
        # Dynamic range quantizes only large weights (TFLite skips tensors under 1024 values):
        # with hybrid ops it is host-only (LiteRT); a model this tiny stays all-float and TFLM runs it.
        hybrid = any("FLOAT32" in op["inputs"] and "INT8" in op["inputs"] for op in op_table(folder / "dynamic.tflite"))
        assert dynamic["deployable"] is not hybrid
        if dynamic["deployable"]:
            assert dynamic["runtime"] == "tflm" and dynamic["arena_bytes"] > 0
        else:
            assert dynamic["runtime"] == "litert" and dynamic["arena_bytes"] is None
            assert "not deployable on TFLM" in dynamic["note"]
        for record in (int8, dynamic):
            assert record["flash_bytes"] == (folder / f"{record['variant']}.tflite").stat().st_size
            assert 0 < record["metadata_bytes"] < record["flash_bytes"]
            for split in ("val", "test"):
                scores = record[split]
                assert scores["steps"] == data.split(split).y.size
                assert 0 <= scores["macro_f1"] <= 1 and 0 <= scores["agreement_with_keras"] <= 1
                assert sum(map(sum, scores["confusion_matrix"])) == scores["steps"]
        # dynamic range keeps float activations: its paths follow the Keras model closely
        assert dynamic["test"]["agreement_with_keras"] > 0.9


@pytest.mark.slow
def test_resume_trains_and_converts_nothing(tiny_sweep, toy, monkeypatch):
    from tinyloc_tf.compression import convert as convert_module
    from tinyloc_tf.training import baselines as baselines_module
    from tinyloc_tf.training import distill, trainer

    out, result = tiny_sweep
    files = sorted(p for p in (out / "runs").rglob("*") if p.is_file())
    stamps = {p: p.stat().st_mtime_ns for p in files}

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished run or variant was redone")

    for module, name in ((trainer, "train_run"), (distill, "distill_run"), (convert_module, "convert")):
        monkeypatch.setattr(module, name, forbidden)
    baseline_calls = []
    monkeypatch.setattr(baselines_module, "run_baselines", lambda *a, **k: baseline_calls.append((a, k)))
    use_tiny_grid(monkeypatch)
    again = sweep_module.sweep(toy, out, family="mamba", grid="tiny", variants=("int8", "dynamic"), **FIT)
    # the only phase left to do was the classical baselines, on the same data, into SWEEP/baselines
    [(args, kwargs)] = baseline_calls
    assert args == (toy, out / "baselines") and kwargs["seed"] == FIT["seed"]
    assert again["runs"] == result["runs"] and again["teachers"] == result["teachers"]
    assert again["variants"] == json.loads(json.dumps(result["variants"]))
    assert sorted(p for p in (out / "runs").rglob("*") if p.is_file()) == files
    assert {p: p.stat().st_mtime_ns for p in files} == stamps

    with pytest.raises(TinylocError, match=r"other settings \(epochs: 2 -> 3\)"):
        sweep_module.sweep(toy, out, family="mamba", grid="tiny", **{**FIT, "epochs": 3})


@pytest.mark.slow
def test_sweep_and_report_cli_resume(tiny_sweep, toy, monkeypatch, capsys):
    from tinyloc_tf.cli import main

    out, result = tiny_sweep
    use_tiny_grid(monkeypatch)
    argv = ["sweep", "--data", str(toy), "--out", str(out), "--family", "mamba", "--grid", "tiny",
            "--epochs", "2", "--batch-size", "16", "--lr", "0.02", "--patience", "2", "--seed", "1",
            "--no-baselines"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["teachers"] == result["teachers"] and set(printed["runs"]) == set(result["runs"])
    assert main(["sweep", "--data", str(toy), "--out", str(out), "--quant", "float32"]) == 2
    assert "float32 model is the run itself" in capsys.readouterr().err
    assert main(["sweep", "--data", str(toy), "--out", str(out), "--grid", "huge"]) == 2
    assert "unknown grid 'huge'" in capsys.readouterr().err

    report_dir = out.parent / "report"
    assert main(["report", str(out), "--out", str(report_dir)]) == 0
    for name in ("results.csv", "report.md", "f1_vs_size.png", "timeline.png"):
        assert (report_dir / name).is_file(), name
    assert "![predicted vs true room" in (report_dir / "report.md").read_text()


@pytest.mark.slow
def test_ray_local_gives_the_same_results_as_the_local_path(tiny_sweep, toy, tmp_path, monkeypatch):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'tinyloc-tf[ray]'")
    import ray

    out, result = tiny_sweep
    use_tiny_grid(monkeypatch)
    # Two configurations, no distillation, compression or baselines: the training tasks are the point.
    via_ray = sweep_module.sweep(toy, tmp_path / "ray", family="mamba", grid="tiny", variants=(), distill=False,
                                 baselines=False, jobs=2, ray_address="local", **FIT)
    assert not ray.is_initialized()  # the sweep shut down the instance it started
    assert set(via_ray["runs"]) == {"mamba-H4L1", "mamba-H2L1"}
    for name, metrics in via_ray["runs"].items():
        local = result["runs"][name]
        assert {k: v for k, v in metrics.items() if k not in TIMING} == {
            k: v for k, v in local.items() if k not in TIMING
        }
    assert via_ray["teachers"] == {"mamba": plan.pick_teacher(result["runs"], "mamba")}


def test_ray_auto_without_a_cluster_is_a_clear_error(monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'tinyloc-tf[ray]'")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if ray.is_initialized():
        pytest.skip("a Ray session is already open in this process")
    with pytest.raises(TinylocError, match=r"cannot connect to the Ray cluster at 'auto' \(start one with"):
        with execute.ray_session("auto"):
            pass


def test_resume_accepts_a_sweep_written_before_a_recipe_field_existed(tmp_path):
    """A sweep.json whose recipe lacks a later field (``ema``) resumes with today's command,
    which sends that field's "off" value; another value is refused, naming the recipe."""
    from dataclasses import asdict

    from tinyloc_tf.training.recipe import Recipe
    from tinyloc_tf.workflows.sweep import _check_resume

    older = {k: v for k, v in asdict(Recipe(ema=0.0)).items() if k != "ema"}
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps({"recipe": older, "epochs": 3}))
    _check_resume(path, {"recipe": Recipe(ema=0.0).to_dict(), "epochs": 3})
    with pytest.raises(TinylocError, match="recipe"):
        _check_resume(path, {"recipe": Recipe(ema=0.998).to_dict(), "epochs": 3})
