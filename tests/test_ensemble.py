"""Ensembles of seeds: the averaged model, ``tinyloc ensemble``, its refit, and the sweep's
``--ensemble N`` (members kept apart, ensembles scored and converted as candidates)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import write_toy_dataset
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.families import get_family
from tinyloc_tf.training.artifacts import load_run
from tinyloc_tf.workflows import plan
from tinyloc_tf.workflows.plan import RunSpec

FIT = dict(epochs=2, batch_size=16, lr=0.02, patience=2, int8_friendly=True)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_dataset(tmp_path_factory.mktemp("data") / "toy")


@pytest.fixture(scope="module")
def seeds(toy, tmp_path_factory):
    """One configuration (MDCSA H4L1) trained with seeds 0, 1, 2."""
    from tinyloc_tf.training.trainer import train_run

    root = tmp_path_factory.mktemp("runs")
    for seed in range(3):
        train_run(toy, "mdcsa", 4, 1, root / f"seed{seed}", seed=seed, verbose=0, **FIT)
    return [root / f"seed{seed}" for seed in range(3)]


# --------------------------------------------------------------------------- planning (no TF)


def test_plan_names_members_and_ensembles_and_respects_max_params():
    specs = [RunSpec("mdcsa", 4, 1), RunSpec("mdcsa", 16, 1)]
    small = plan.param_count("mdcsa", 8, 4, 4, 1)
    large = plan.param_count("mdcsa", 8, 4, 16, 1)
    assert 3 * small < 2 * large
    members, ensembles = plan.plan_ensembles(specs, 3, features=8, classes=4, max_params=2 * large)
    assert [e.name for e in ensembles] == ["mdcsa-H4L1-x2", "mdcsa-H4L1-x3", "mdcsa-H16L1-x2"]
    assert [m.name for m in members] == ["mdcsa-H4L1-seed+1", "mdcsa-H4L1-seed+2", "mdcsa-H16L1-seed+1"]
    assert all(m.is_member and m.members == 1 for m in members)
    assert [m.name for m in ensembles[1].member_specs()] == ["mdcsa-H4L1", "mdcsa-H4L1-seed+1", "mdcsa-H4L1-seed+2"]
    members, ensembles = plan.plan_ensembles(specs, 3, features=8, classes=4, max_params=2 * small - 1)
    assert members == [] and ensembles == []
    assert plan.plan_ensembles(specs, 1, features=8, classes=4, max_params=None) == ([], [])


# --------------------------------------------------------------------------- the model


def test_ensemble_is_the_mean_of_its_members(toy, seeds, tmp_path):
    from tinyloc_tf.decoding import viterbi_decode
    from tinyloc_tf.training.ensemble import ensemble_run
    from tinyloc_tf.training.metrics import macro_f1
    from tinyloc_tf.training.trainer import load_data

    data = load_data(toy)
    out = tmp_path / "x3"
    metrics = ensemble_run(seeds, out)
    model, config = load_run(out)  # saved and loaded through Keras
    members = [load_run(run)[0] for run in seeds]
    X = data.val.X
    emissions = [m.emissions(X) for m in members]
    np.testing.assert_allclose(model.emissions(X), np.mean(emissions, axis=0), rtol=1e-5, atol=1e-5)
    crf = [m.crf.get_weights() for m in members]
    for index, weights in enumerate(model.crf.get_weights()):
        np.testing.assert_allclose(weights, np.mean([w[index] for w in crf], axis=0), rtol=1e-6)
    # the recorded val score is the averaged model's Viterbi path, as for any run
    path = viterbi_decode(np.mean(emissions, axis=0), *model.crf.get_weights())
    assert metrics["val_macro_f1"] == pytest.approx(macro_f1(data.val.y, path), abs=1e-6)
    assert config["kind"] == "ensemble" and config["build_config"]["members"] == 3
    assert [m["seed"] for m in metrics["ensemble"]["members"]] == [0, 1, 2] and metrics["seed"] == [0, 1, 2]
    assert metrics["params"] == sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_ensemble_converts_to_int8_with_add_and_mul_only(seeds, toy, tmp_path):
    from tinyloc_tf.compression.convert import convert, op_table
    from tinyloc_tf.training.ensemble import ensemble_run
    from tinyloc_tf.training.trainer import load_data

    ensemble_run(seeds[:2], tmp_path / "x2")
    model, _ = load_run(tmp_path / "x2")
    data = load_data(toy)
    result = convert(model, "int8", representative=data.train.X)
    path = tmp_path / "x2.tflite"
    path.write_bytes(result.tflite)
    ops = {op["op"] for op in op_table(path)}
    assert "PACK" not in ops and {"ADD", "MUL"} <= ops
    assert result.report["float_ops"] == {}
    from tinyloc_tf.deployment.host import tflm_blocker

    assert tflm_blocker(result.tflite) is None


def test_ensemble_refusals(seeds, toy, tmp_path):
    from tinyloc_tf.training.ensemble import ensemble_run
    from tinyloc_tf.training.trainer import train_run

    with pytest.raises(TinylocError, match="at least two runs"):
        ensemble_run(seeds[:1], tmp_path / "e")
    with pytest.raises(TinylocError, match="run given twice"):
        ensemble_run([seeds[0], seeds[0]], tmp_path / "e")
    other = tmp_path / "h2"
    train_run(toy, "mdcsa", 2, 1, other, verbose=0, **{**FIT, "epochs": 1})
    with pytest.raises(TinylocError, match="another architecture than member 0 .*hidden: 4 vs 2"):
        ensemble_run([seeds[0], other], tmp_path / "e")
    elsewhere = write_toy_dataset(tmp_path / "other", seed=7)
    trained_elsewhere = tmp_path / "elsewhere"
    train_run(elsewhere, "mdcsa", 4, 1, trained_elsewhere, verbose=0, **{**FIT, "epochs": 1})
    with pytest.raises(TinylocError, match="different data"):
        ensemble_run([seeds[0], trained_elsewhere], tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_cli_ensemble_and_refit(seeds, tmp_path, capsys):
    from tinyloc_tf.cli import main

    out = tmp_path / "x2"
    assert main(["ensemble", str(seeds[0]), str(seeds[1]), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["params"] > 0
    assert main(["ensemble", str(seeds[0]), str(seeds[1]), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    refit = tmp_path / "refit"
    assert main(["refit", str(out), "--out", str(refit), "--quiet"]) == 0
    metrics = json.loads((refit / "metrics.json").read_text())
    assert metrics["refit"]["members"] == ["seed0", "seed1"] and metrics["val_in_sample"] is True
    assert [m["seed"] for m in metrics["ensemble"]["members"]] == [0, 1]  # what a model card names
    for member, epochs in zip(seeds, metrics["refit"]["epochs"]):
        assert epochs == json.loads((member / "metrics.json").read_text())["best_epoch"]
    model, config = load_run(refit)
    assert config["kind"] == "refit" and config["build_config"]["members"] == 2
    # an ensemble of refits is refused: their validation scores are in-sample
    assert main(["ensemble", str(refit), str(seeds[2]), "--out", str(tmp_path / "bad")]) == 2
    assert "refit" in capsys.readouterr().err


# --------------------------------------------------------------------------- the sweep


@pytest.mark.slow
def test_sweep_with_ensembles(toy, tmp_path):
    from tinyloc_tf.reports.report import collect_rows
    from tinyloc_tf.workflows import sweep as sweep_module

    out = tmp_path / "sweep"
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(get_family("mdcsa").grids, "tiny", [(4, 1)])
        patch.setitem(get_family("mamba").grids, "tiny", [(2, 1)])
        result = sweep_module.sweep(toy, out, family="both", grid="tiny", variants=("int8", "stream-int8"),
                                    baselines=False, distill=False, ensemble=3, seed=0, **FIT)
    runs = result["runs"]
    assert set(runs) == {"mdcsa-H4L1", "mdcsa-H4L1-x2", "mdcsa-H4L1-x3",
                         "mamba-H2L1", "mamba-H2L1-x2", "mamba-H2L1-x3"}
    assert sorted(p.name for p in (out / "members").iterdir()) == [
        "mamba-H2L1-seed+1", "mamba-H2L1-seed+2", "mdcsa-H4L1-seed+1", "mdcsa-H4L1-seed+2"]
    assert json.loads((out / "members" / "mdcsa-H4L1-seed+2" / "config.json").read_text())["training"]["seed"] == 2
    assert [m["seed"] for m in runs["mdcsa-H4L1-x3"]["ensemble"]["members"]] == [0, 1, 2]
    # ensembles are converted like any run; streaming is for single Mambas only
    assert sorted(result["variants"]["mamba-H2L1"]) == ["int8", "stream-int8"]
    assert sorted(result["variants"]["mamba-H2L1-x2"]) == ["int8"]
    frame = collect_rows(out)
    ensembles = frame[frame["kind"] == "ensemble"]
    assert set(ensembles["config"]) == {"mdcsa-H4L1x2", "mdcsa-H4L1x3", "mamba-H2L1x2", "mamba-H2L1x3"}
    assert not frame["run"].str.contains(r"seed\+").any(), "members are not candidates"
    assert json.loads((out / "sweep.json").read_text())["ensemble"] == 3
