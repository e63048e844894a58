"""The shipped models (``models/<dataset>/<budget>kb.tflite``) reproduce their cards.

Fast checks read the card and the file (sizes, sha256, embedded metadata, exact arena).
The slow checks rebuild the prepared data from the card's recipe (UJIIndoorLoc from the
``uji_zip`` fixture, the synthetic house from its seed), check its sha256, and run
``tinyloc evaluate`` on the shipped file, expecting the card's numbers exactly; a streaming
step model's card (``model.streaming``) with ``--streaming`` and the card's lag and resets.
Cards are written by ``scripts/ship_models.py`` with :mod:`tinyloc_tf.reports.card`, which
describes their fields (see docs/shipped_models.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tinyloc_tf.cli import main as tinyloc
from tinyloc_tf.reports.card import (
    CARD_FORMAT,
    find_cards,
    prepare_from_recipe,
    read_card,
    render_card,
    shipped_names,
)

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
CARDS = find_cards(MODELS)
SHIPPED = (("ujiindoorloc", 64), ("ujiindoorloc", 32), ("synth-house-a", 64), ("synth-house-a", 32),
           ("synth-house-a-streaming", 32))
TFLM_VARIANTS = ("int8", "selective", "qat")
STREAM_VARIANTS = ("stream-int8", "stream-int16x8")


def _streaming(card: dict) -> dict | None:
    return card["model"].get("streaming")


def _ids(paths):
    return [f"{p.parent.name}/{p.stem}" for p in paths]


def test_every_dataset_ships_both_budgets():
    for name, budget in SHIPPED:
        tflite_name, card_name = shipped_names(budget)
        card = MODELS / name / card_name
        assert card.is_file(), f"{card} missing: run scripts/ship_models.py (docs/shipped_models.md)"
        assert (MODELS / name / tflite_name).is_file(), f"{MODELS / name / tflite_name} missing"
        assert read_card(card)["budget_kb"] == budget and read_card(card)["dataset"] == name


@pytest.mark.parametrize("card_path", CARDS, ids=_ids(CARDS))
def test_card_is_written_as_the_card_module_writes_it(card_path):
    """Every shipped card is, byte for byte, what ``render_card`` makes of its contents."""
    card = read_card(card_path)
    assert card["format"] == CARD_FORMAT
    assert render_card(card) == card_path.read_text()


@pytest.mark.parametrize("card_path", CARDS, ids=_ids(CARDS))
def test_card_describes_its_file(card_path):
    from tinyloc_tf.compression.metadata import read_metadata

    card = read_card(card_path)
    buf = (card_path.parent / card["file"]).read_bytes()
    assert card["file"] == card_path.with_suffix(".tflite").name
    assert hashlib.sha256(buf).hexdigest() == card["tflite_sha256"]
    limit = card["budget_kb"] * 1024
    assert len(buf) == card["flash_bytes"] <= limit
    assert 0 < card["arena_bytes"] <= limit
    model, streaming = card["model"], _streaming(card)
    assert model["variant"] in (TFLM_VARIANTS if streaming is None else STREAM_VARIANTS)
    # the headline numbers are the evaluate output's, not copied from elsewhere
    for split in ("test", "val"):
        report = card["evaluate"][split]
        assert report["split"] == split and report["runtime"] == "tflm"
        if streaming is None:
            assert report["tflm_deployable"]
            assert card["metrics"][split] == {key: report[key] for key in ("macro_f1", "accuracy", "steps", "windows")}
        else:  # scored over whole streams with the sweep's decoder, lag and resets
            assert report["mode"] == "streaming" and report["reset_every"] == streaming["reset_every"]
            assert report["state_bytes"] == streaming["state_bytes"]
            scores = report["decoders"][f"{streaming['decoder']}_lag{streaming['lag']}"]
            assert card["metrics"][split] == {"macro_f1": scores["macro_f1"], "accuracy": scores["accuracy"],
                                              "samples": report["samples"], "streams": report["streams"]}
        for key in ("flash_bytes", "arena_bytes", "metadata_bytes", "params"):
            assert card[key] == report[key]
    # selection was on validation, and the file is the model the card names; a refit model's
    # own val scores are in-sample (it trained on val), so selection used the sweep's run
    if "refit" in model:
        assert model["refit"]["val_in_sample"] is True and model["refit"]["fit_splits"] == ["train", "val"]
        assert model["refit"]["of"] == model["run"] and "refit" in card["commands"]
    else:
        assert card["selection"]["val_macro_f1"] == card["metrics"]["val"]["macro_f1"]
    meta = read_metadata(buf)
    quant = model["variant"] if streaming is None else model["variant"].removeprefix("stream-")
    assert (meta["quant"], meta["family"], meta["hidden"], meta["layers"], meta["params"]) == (
        quant, model["family"], model["hidden"], model["layers"], model["params"])
    assert ("streaming" in meta) == (streaming is not None)
    if streaming is not None:  # the card's commands make and score a step model the way it was scored
        reset = f" --reset-every {streaming['reset_every']}" if streaming["reset_every"] else ""
        for command in card["commands"]["evaluate"]:
            assert f"--streaming --lags {streaming['lag']}{reset}" in command
        if "refit" in model:
            assert f"--streaming --quant {quant}" in card["commands"]["refit"][-1]
    assert meta["data_sha256"] == card["data"]["prepared_sha256"]
    assert list(meta["classes"]) == card["data"]["classes"]
    assert int(meta["T"]) == card["data"]["T"] and len(meta["features"]) == card["data"]["features"]


@pytest.mark.parametrize("card_path", CARDS, ids=_ids(CARDS))
def test_arena_is_exact(card_path):
    """The model runs in exactly the card's arena and not in one byte less (host TFLM)."""
    from tinyloc_tf.deployment.host import arena_works

    card = read_card(card_path)
    tflite = card_path.parent / card["file"]
    assert arena_works(tflite, card["arena_bytes"])
    assert not arena_works(tflite, card["arena_bytes"] - 1)


def _tiny_prepared(buf: bytes, out: Path) -> Path:
    """A prepared folder that fits the model (features, classes, T, scaling from its metadata)."""
    from tinyloc_tf.compression.metadata import read_metadata
    from tinyloc_tf.data import Split, write_prepared

    meta = read_metadata(buf)
    steps, features = int(meta["T"]), len(meta["features"])
    rng = np.random.default_rng(0)
    split = Split(X=rng.random((3, steps, features), dtype=np.float32), y=np.zeros((3, steps), dtype=np.int32))
    return write_prepared(out, {"train": split, "val": split, "test": split}, {
        "features": list(meta["features"]), "classes": list(meta["classes"]), "T": steps,
        "scaling": meta["scaling"], "labels": meta.get("labels", "room"), "source": "test", "source_sha256": "-",
    })


WINDOW_CARDS = [p for p in CARDS if _streaming(read_card(p)) is None]


@pytest.mark.skipif(not WINDOW_CARDS, reason="no shipped window models under models/")
def test_too_small_arena_is_a_clear_error(tmp_path, capsys):
    """`tinyloc evaluate --arena-kb` below the need exits non-zero naming the size; the probe
    runs in child processes, so this process survives."""
    card_path = min(WINDOW_CARDS, key=lambda p: read_card(p)["flash_bytes"])
    card = read_card(card_path)
    tflite = card_path.parent / card["file"]
    data = _tiny_prepared(tflite.read_bytes(), tmp_path / "data")
    too_small_kb = (card["arena_bytes"] - 1) // 1024
    code = tinyloc(["evaluate", str(tflite), "--data", str(data), "--arena-kb", str(too_small_kb), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "too small" in err and f"TFLM needs {card['arena_bytes']} bytes" in err
    assert f"--arena-kb {-(-card['arena_bytes'] // 1024)}" in err


# --------------------------------------------------------------------------- full reproduction

_PREPARED: dict[str, Path] = {}


def _rebuild(recipe: dict, request, tmp_path_factory) -> Path:
    """The prepared folder of ``recipe``, built once per recipe in this test session."""
    key = json.dumps(recipe, sort_keys=True)
    if key in _PREPARED:
        return _PREPARED[key]
    if recipe["kind"] not in ("uji", "synthetic-inhome"):
        pytest.skip(f"recipe kind {recipe['kind']!r} needs raw data the tests do not have")
    # UJIIndoorLoc from the `uji_zip` fixture (its sha256 is checked against the recipe's);
    # the synthetic house is synthesised again from its seed.
    archive = request.getfixturevalue("uji_zip") if recipe["kind"] == "uji" else None
    out = prepare_from_recipe(recipe, tmp_path_factory.mktemp("prepared"), source=archive)
    _PREPARED[key] = out
    return out


@pytest.mark.slow
@pytest.mark.parametrize("card_path", CARDS, ids=_ids(CARDS))
def test_card_reproduces(card_path, request, tmp_path_factory, tmp_path, monkeypatch):
    from tinyloc_tf.data import load_prepared

    card = read_card(card_path)
    data_dir = _rebuild(card["data"]["recipe"], request, tmp_path_factory)
    dataset = load_prepared(data_dir)
    assert dataset.fingerprint() == card["data"]["prepared_sha256"]
    assert dataset.meta["source_sha256"] == card["data"]["source_sha256"]

    monkeypatch.chdir(REPO)  # the card records the model as `models/<dataset>/<budget>kb.tflite`
    shipped = card["evaluate"]["test"]["model"]
    streaming = _streaming(card)
    arena_kb = card["arena_bytes"] / 1024  # exact: a power-of-two division
    if streaming is None:  # in exactly the card's arena
        options = ["--runtime", "tflm", "--arena-kb", repr(arena_kb)]
    else:  # sample by sample over whole streams (test_arena_is_exact checks its arena)
        reset = streaming["reset_every"]
        options = ["--streaming", "--lags", str(streaming["lag"]), *(["--reset-every", str(reset)] if reset else [])]
    for split in ("test", "val"):
        out = tmp_path / f"{split}.json"
        code = tinyloc(["evaluate", shipped, "--data", str(data_dir), "--split", split, *options,
                        "--out", str(out), "--quiet"])
        assert code == 0
        got = json.loads(out.read_text())
        expected = dict(card["evaluate"][split])
        if streaming is None:
            assert got.pop("arena_kb_given") == arena_kb
            expected.pop("arena_kb_given")
        assert got == expected
