"""Conversion variants, embedded metadata, name stripping, error messages, QAT and the
``tinyloc convert`` / ``tinyloc evaluate`` commands, on small real models (build_model) and
a stand-in Keras model."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from keras import ops

from tinyloc_tf.compression import convert as conv
from tinyloc_tf.compression.metadata import metadata_entries, read_metadata, write_metadata
from tinyloc_tf.data import Split, load_prepared, write_prepared
from tinyloc_tf.deployment.host import evaluate_tflite, run_tflite, tflm_blocker
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.models import build_model

STEPS, FEATURES, CLASSES = 4, 5, 3


def room_windows(count, steps=STEPS, features=FEATURES, classes=CLASSES, seed=0):
    """Windows in [0, 1] whose rooms have distinct RSSI signatures; the room may change once."""
    rng = np.random.default_rng(seed)
    signatures = np.random.default_rng(99).uniform(0.1, 0.9, size=(classes, features))
    y = np.repeat(rng.integers(classes, size=(count, 1)), steps, axis=1)
    for row, cut in enumerate(rng.integers(1, steps + 1, size=count)):
        y[row, cut:] = rng.integers(classes)
    X = np.clip(signatures[y] + rng.normal(0, 0.05, size=(count, steps, features)), 0, 1)
    return X.astype(np.float32), y.astype(np.int32)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    splits = {name: Split(*room_windows(n, seed=i)) for i, (name, n) in enumerate((("train", 64), ("val", 24), ("test", 24)))}
    meta = {
        "features": [f"ap{i}" for i in range(FEATURES)],
        "classes": [f"room{k}" for k in range(CLASSES)],
        "T": STEPS,
        "scaling": {"min": [-110.0] * FEATURES, "max": [-30.0] * FEATURES, "unit": "dBm"},
        "labels": "room",
        "source": "test windows",
        "source_sha256": "0" * 64,
    }
    return load_prepared(write_prepared(tmp_path_factory.mktemp("data") / "toy", splits, meta))


def small_tagger(family, int8_friendly=True, seed=0):
    keras.utils.set_random_seed(seed)
    return build_model(family, features=FEATURES, classes=CLASSES, hidden=4, layers=1, steps=STEPS,
                       int8_friendly=int8_friendly)


@pytest.fixture(scope="module")
def mamba():
    return small_tagger("mamba")


@pytest.fixture(scope="module")
def mamba_int8(mamba, toy):
    return conv.convert(mamba, "int8", representative=toy.train.X, metadata=conv.data_metadata(toy))


def stand_in(steps=STEPS, features=FEATURES, classes=CLASSES, hidden=6, extra=None):
    """Dense -> hand-written LayerNorm -> tanh -> Dense -> softmax over [B, T, F]."""
    keras.utils.set_random_seed(1)
    x = inputs = keras.Input((steps, features))
    h = keras.layers.Dense(hidden, name="embed")(x)
    mean = ops.mean(h, axis=-1, keepdims=True)
    centred = h - mean
    h = centred * ops.rsqrt(ops.mean(centred * centred, axis=-1, keepdims=True) + 1e-5)
    h = ops.tanh(h)
    if extra is not None:
        h = extra(h)
    out = ops.softmax(keras.layers.Dense(classes, name="head")(h), axis=-1)
    return keras.Model(inputs, out, name="stand_in")


# --------------------------------------------------------------------------- inputs


def test_representative_subset_is_seeded_real_windows():
    X = np.random.default_rng(0).random((50, 2, 3)).astype(np.float32)
    a, b = conv.representative_subset(X, 10, seed=4), conv.representative_subset(X, 10, seed=4)
    assert a.shape == (10, 2, 3) and np.array_equal(a, b)
    assert all(any(np.array_equal(row, x) for x in X) for row in a)  # rows of X, not noise
    assert not np.array_equal(a, conv.representative_subset(X, 10, seed=5))
    assert conv.representative_subset(X, 500).shape == X.shape
    with pytest.raises(TinylocError, match="NaN"):
        conv.representative_subset(np.full((3, 2, 2), np.nan))


def test_calibration_trim_drops_the_windows_with_the_most_extreme_emissions(mamba, toy):
    # A model whose emission magnitude is the window's largest input: the trim must drop
    # exactly the windows holding the largest values, and nothing when the trim is 0.
    inputs = keras.Input((2, 3))
    peak = keras.Model(inputs, ops.max(inputs, axis=-1, keepdims=True))
    X = np.random.default_rng(1).random((40, 2, 3)).astype(np.float32)
    X[[3, 17], 0, 0] = 50.0  # two outliers
    kept = conv.trim_calibration(peak, X, 5.0)
    assert len(kept) == 38 and kept.max() < 1.0
    assert len(conv.trim_calibration(peak, X, 0.0)) == 40
    with pytest.raises(TinylocError, match="percentage"):
        conv.trim_calibration(peak, X, 100.0)
    # Through convert: the report says how many windows calibrated and what was trimmed.
    result = conv.convert(mamba, "int8", representative=toy.train.X, calibration_trim=10.0)
    assert result.report["representative"]["trimmed_percent"] == 10.0
    assert result.report["representative"]["windows"] <= int(0.9 * len(toy.train.X)) + 1


def test_bad_requests_are_refused(mamba):
    with pytest.raises(TinylocError, match="unknown quantization"):
        conv.convert(mamba, "int4")
    with pytest.raises(TinylocError, match="representative"):
        conv.convert(mamba, "int8")
    with pytest.raises(TinylocError, match="labels"):
        conv.convert(mamba, "qat", representative=np.zeros((4, STEPS, FEATURES), np.float32))
    with pytest.raises(TinylocError, match="representative windows are"):
        conv.convert(mamba, "int8", representative=np.zeros((4, STEPS, FEATURES + 1), np.float32))


# --------------------------------------------------------------------------- variants


def test_float32_stand_in_matches_keras_in_both_runtimes():
    model = stand_in()
    X = room_windows(8)[0]
    buf = conv.convert_model(model, "float32", representative=X)
    expected = np.asarray(model(X))
    for runtime in ("tflm", "litert"):
        np.testing.assert_allclose(run_tflite(buf, X, runtime=runtime), expected, atol=1e-5)
    assert read_metadata(buf)["quant"] == "float32"


def test_int8_mamba_is_fully_integer_and_tracks_keras(mamba, mamba_int8, toy):
    buf, report = mamba_int8.tflite, mamba_int8.report
    assert report["float_ops"] == {} and conv.float_ops(buf) == {}
    assert "QUANTIZE" not in report["ops"] and "DEQUANTIZE" not in report["ops"]
    assert report["int8_weight_tensors"] > 0 and report["representative"] == {"windows": 64, "seed": 0}
    X = toy.test.X
    expected = np.asarray(mamba.encoder(X, training=False))
    tflm = run_tflite(buf, X, runtime="tflm")
    litert = run_tflite(buf, X, runtime="litert")
    # Tolerance relative to the spread R of the Keras emissions: 3 % of R on average, 12 % at
    # worst (int8 activations carry 1/255 of their own range each, a few ops deep).
    spread = float(np.ptp(expected))
    assert np.abs(tflm - expected).mean() <= 0.03 * spread
    assert np.abs(tflm - expected).max() <= 0.12 * spread
    # TFLM and LiteRT run the same int8 graph; they may differ by a rounding step here and there.
    scale = read_io_scale(buf)
    assert np.abs(tflm - litert).max() <= 2 * scale + 1e-6
    assert np.mean(np.isclose(tflm, litert, atol=1e-6)) >= 0.90


def read_io_scale(buf):
    from tinyloc_tf.deployment.host import make_runner

    return make_runner(buf, "litert").output.scale


def test_int8_mdcsa_float_ops_are_at_most_the_elu_island(toy):
    """Exact MDCSA keeps a float ELU (no TFLite quantizer handles it); int8_friendly has none."""
    exact = conv.convert(small_tagger("mdcsa", int8_friendly=False), "int8", representative=toy.train.X)
    assert set(exact.report["float_ops"]) <= {"ELU"}
    friendly = conv.convert(small_tagger("mdcsa", int8_friendly=True), "int8", representative=toy.train.X)
    assert friendly.report["float_ops"] == {}
    assert tflm_blocker(friendly.tflite) is None


def test_exact_mamba_int8_is_not_deployable_but_selective_is(toy):
    """int8 EXP/LOG have no TFLM kernel; selective keeps them (and outliers) in float."""
    tagger = small_tagger("mamba", int8_friendly=False)
    int8 = conv.convert(tagger, "int8", representative=toy.train.X)
    assert {"EXP", "LOG"} <= set(int8.report["ops"])
    assert "EXP" in (tflm_blocker(int8.tflite) or "")

    selective = conv.convert(tagger, "selective", representative=toy.train.X)
    kept = {row["op"] for row in selective.report["kept_float"]}
    assert {"EXP", "LOG"} <= kept
    assert {"EXP", "LOG"} <= set(selective.report["float_ops"])
    assert read_metadata(selective.tflite)["kept_float"] == selective.report["kept_float"]
    assert tflm_blocker(selective.tflite) is None
    X = toy.test.X
    expected = np.asarray(tagger.encoder(X, training=False))
    got = run_tflite(selective.tflite, X, runtime="tflm")
    assert np.abs(got - expected).mean() <= 0.03 * float(np.ptp(expected))


def test_selective_threshold_decides_what_stays_float(mamba, toy):
    everything = conv.convert(mamba, "selective", representative=toy.train.X, selective_threshold=0.0)
    kept = everything.report["kept_float"]
    assert kept and all(row["reason"] == "quantization error outlier" for row in kept)
    assert any(row["layer"].startswith("encoder") for row in kept), kept  # named by Keras layer
    assert set(everything.report["float_ops"])  # those ops now compute in float
    nothing = conv.convert(mamba, "selective", representative=toy.train.X, selective_threshold=1e9)
    assert nothing.report["kept_float"] == []


def test_dynamic_quantizes_large_weights_and_is_host_only():
    model = stand_in(features=64, hidden=32)  # embed kernel 64 x 32 = 2048 >= 1024 elements
    X = np.random.default_rng(0).random((8, STEPS, 64)).astype(np.float32)
    result = conv.convert(model, "dynamic", representative=X)
    assert result.report["int8_weight_tensors"] >= 1 and "note" not in result.report
    blocker = tflm_blocker(result.tflite)
    assert blocker and blocker.startswith("not deployable on TFLM")
    np.testing.assert_allclose(run_tflite(result.tflite, X, runtime="litert"), np.asarray(model(X)), atol=0.02)


def test_dynamic_on_small_weights_says_it_stayed_float(mamba):
    result = conv.convert(mamba, "dynamic")
    assert result.report["int8_weight_tensors"] == 0 and "1024" in result.report["note"]


def test_qat_fine_tunes_onto_the_int8_grid(mamba, toy):
    from tinyloc_tf.compression.qat import _quantizable_kernels, fine_tune

    tuned, report = fine_tune(mamba, toy.train.X, toy.train.y, validation=(toy.val.X, toy.val.y),
                              epochs=2, batch_size=24, lr=1e-3, progress=False)
    assert [row["epoch"] for row in report["history"]] == [1, 2]
    assert report["val_macro_f1_after"] >= report["val_macro_f1_before"]
    for kernel, depthwise in _quantizable_kernels(tuned.encoder):
        w = np.asarray(kernel)
        flat = w.reshape(w.shape[0], -1) if depthwise else w.reshape(-1, w.shape[-1])
        steps = flat / (np.abs(flat).max(axis=0) / 127.0)
        np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)  # on TFLite's int8 grid
    assert not np.array_equal(np.asarray(mamba.encoder.embed.kernel), np.asarray(tuned.encoder.embed.kernel))


# --------------------------------------------------------------------------- stripping, metadata


def test_stripping_names_keeps_outputs_identical(mamba, toy):
    named = conv.convert(mamba, "int8", representative=toy.train.X, strip=False).tflite
    stripped = conv.convert(mamba, "int8", representative=toy.train.X).tflite
    assert len(stripped) < len(named)
    assert b"encoder" in named and b"encoder" not in stripped
    assert conv.op_counts(named) == conv.op_counts(stripped)
    X = toy.test.X
    np.testing.assert_array_equal(run_tflite(named, X), run_tflite(stripped, X))


def test_metadata_round_trips_and_carries_what_deployment_needs(mamba, mamba_int8, toy):
    meta = read_metadata(mamba_int8.tflite)
    assert meta["features"] == toy.meta["features"] and meta["classes"] == toy.meta["classes"]
    assert meta["T"] == STEPS and meta["quant"] == "int8" and meta["family"] == "mamba"
    assert meta["scaling"]["min"] == toy.meta["scaling"]["min"] and meta["scaling"]["unit"] == "dBm"
    assert meta["data_sha256"] == toy.fingerprint() and meta["params"] == mamba.count_params()
    for name in ("transitions", "start", "end"):  # the float16 rounding of the trained values
        trained = np.asarray(getattr(mamba.crf, name), dtype=np.float32)
        np.testing.assert_array_equal(np.float32(meta["crf"][name]), trained.astype(np.float16).astype(np.float32))
        assert np.abs(np.float32(meta["crf"][name]) - trained).max() <= 2.0**-11 * np.abs(trained).max()
    assert "source" not in meta or "/" not in str(meta["source"])  # no folder of the converting machine
    assert {"tinyloc", "tinyloc.arrays"} == set(metadata_entries(mamba_int8.tflite))  # the converter's own are dropped

    rewritten = write_metadata(mamba_int8.tflite, {"note": "x", "weights": np.arange(6.0).reshape(2, 3)})
    assert read_metadata(rewritten)["weights"] == [[0, 1, 2], [3, 4, 5]]
    assert "crf" not in read_metadata(rewritten)  # replaced, not merged
    np.testing.assert_array_equal(run_tflite(rewritten, toy.test.X), run_tflite(mamba_int8.tflite, toy.test.X))


def test_per_tensor_weights_give_one_scale_per_weight_tensor_and_a_smaller_file(mamba, mamba_int8, toy):
    from tinyloc_tf.compression.flatbuffer import read_model, tensor_quantization

    per_tensor = conv.convert(mamba, "int8", representative=toy.train.X, metadata=conv.data_metadata(toy),
                              per_tensor_weights=True)

    def weight_scales(buf):
        fb = read_model(buf)
        return [len(tensor_quantization(t)[0]) for t in fb.tensors
                if fb.type_name(t) == "INT8" and fb.tensor_data(t) is not None]

    assert set(weight_scales(per_tensor.tflite)) == {1}
    assert max(weight_scales(mamba_int8.tflite)) > 1  # the default stays per channel
    assert len(per_tensor.tflite) < len(mamba_int8.tflite)
    assert read_metadata(per_tensor.tflite)["weights"] == "per-tensor" and "weights" not in read_metadata(mamba_int8.tflite)
    # Same model, another rounding: the emissions stay close to the per-channel file's.
    a, b = run_tflite(per_tensor.tflite, toy.test.X), run_tflite(mamba_int8.tflite, toy.test.X)
    assert np.mean(np.argmax(a, -1) == np.argmax(b, -1)) > 0.8


def test_numbered_names_are_stored_as_their_rule_and_repack_keeps_every_value(mamba_int8):
    """520 names WAP001..WAP520 cost a few bytes as a rule, and read back as the list; other
    lists stay lists. repack() writes an older file again with the same content."""
    import json
    import zlib

    from tinyloc_tf.compression.flatbuffer import graph_content
    from tinyloc_tf.compression.metadata import numbered_run, repack

    names = [f"WAP{i:03d}" for i in range(1, 521)]
    payload = {"features": names, "classes": ["kitchen", "hall"], "crf": {"start": np.arange(2.0)}}
    ruled = write_metadata(mamba_int8.tflite, payload)
    listed = read_metadata(ruled)
    assert listed["features"] == names and listed["classes"] == ["kitchen", "hall"]
    text = json.loads(zlib.decompress(metadata_entries(ruled)["tinyloc"]))
    assert text["numbered_names"] == {"features": {"prefix": "WAP", "digits": 3, "first": 1, "count": 520}}
    assert len(metadata_entries(ruled)["tinyloc"]) < 200
    assert numbered_run(["ap_1", "ap_3"]) is None and numbered_run(["a1"]) is None
    assert numbered_run(["x9", "x10"]) == {"prefix": "x", "digits": 1, "first": 9, "count": 2}

    again = repack(ruled)
    assert graph_content(again)[0] == graph_content(ruled)[0] and read_metadata(again) == listed


def test_single_step_models_store_no_transitions():
    """With T = 1 no path takes a transition, so the metadata keeps zeros (a few bytes)."""
    keras.utils.set_random_seed(0)
    tagger = build_model("mamba", features=FEATURES, classes=CLASSES, hidden=4, layers=1, steps=1, int8_friendly=True)
    meta = read_metadata(conv.convert_model(tagger, "float32"))
    assert meta["T"] == 1 and np.all(np.asarray(meta["crf"]["transitions"]) == 0)
    np.testing.assert_array_equal(np.float32(meta["crf"]["start"]), np.asarray(tagger.crf.start).astype(np.float16))


def test_metadata_arrays_take_the_smallest_exact_type():
    import zlib

    from tinyloc_tf.compression.metadata import ARRAYS_NAME, METADATA_NAME

    arrays = {"dbm": np.array([-120.0, -40.0, 0.0]), "wide": np.array([-300.0, 1000.0]),
              "half": np.float16([0.1, -2.5]).astype(np.float32), "single": np.float32([0.1, 3.0])}
    buf = write_metadata(conv.finalize(_bare_model(), None), dict(arrays))
    document = json.loads(zlib.decompress(metadata_entries(buf)[METADATA_NAME]))
    assert {k: v.get("dtype", "<f4") for k, v in document["arrays"].items()} == {
        "dbm": "<i1", "wide": "<i2", "half": "<f2", "single": "<f4"}
    assert len(zlib.decompress(metadata_entries(buf)[ARRAYS_NAME])) == 3 + 4 + 4 + 8
    meta = read_metadata(buf)
    for name, values in arrays.items():  # every value comes back exactly
        np.testing.assert_array_equal(np.float32(meta[name]), np.float32(values))

    document["arrays"]["dbm"]["dtype"] = "<u8"
    entries = metadata_entries(buf)
    from tinyloc_tf.compression.metadata import decode_payload

    with pytest.raises(TinylocError, match="'dbm' has an unknown dtype '<u8'"):
        decode_payload(zlib.compress(json.dumps(document).encode()), entries[ARRAYS_NAME])


def _bare_model() -> bytes:
    import tensorflow as tf

    return tf.lite.TFLiteConverter.from_keras_model(conv.deployable_graph(stand_in())).convert()


def test_metadata_errors_name_the_problem(tmp_path):
    bare = _bare_model()  # TFLite's own output
    with pytest.raises(TinylocError, match="no 'tinyloc' metadata"):
        read_metadata(bare)
    plain = conv.finalize(bare, {"quant": "float32"})
    with pytest.raises(TinylocError, match="not a TFLite flatbuffer"):
        read_metadata(b"definitely not a model")
    with pytest.raises(TinylocError, match="no such .tflite"):
        read_metadata(tmp_path / "missing.tflite")
    with pytest.raises(TinylocError, match="JSON"):
        write_metadata(plain, {"bad": object()})


def test_conversion_failure_names_op_and_layer():
    import tensorflow as tf

    class Unsupported(keras.layers.Layer):
        def call(self, x):
            return tf.math.igamma(x * x + 1.0, x * x + 2.0)

    model = stand_in(extra=Unsupported(name="weird_layer"))
    with pytest.raises(TinylocError, match=r"op Igamma in layer (\w+/)*weird_layer"):
        conv.convert_model(model, "float32", representative=room_windows(2)[0])


# --------------------------------------------------------------------------- evaluate and CLI


def test_evaluate_scores_with_the_embedded_crf(mamba, mamba_int8, toy, tmp_path):
    path = tmp_path / "m.tflite"
    path.write_bytes(mamba_int8.tflite)
    report = evaluate_tflite(path, toy, split="test", runtime="tflm")
    assert report["runtime"] == "tflm" and report["tflm_deployable"] is True
    assert report["flash_bytes"] == path.stat().st_size and report["arena_bytes"] > 0
    assert report["windows"] == 24 and report["steps"] == 24 * STEPS
    from tinyloc_tf.decoding import viterbi_decode
    from tinyloc_tf.training.metrics import macro_f1

    crf = [np.asarray(getattr(mamba.crf, n)).astype(np.float16) for n in ("transitions", "start", "end")]
    paths = viterbi_decode(run_tflite(path, toy.test.X), *crf)
    assert report["macro_f1"] == pytest.approx(macro_f1(toy.test.y, paths))


@pytest.fixture(scope="module")
def run_folder(toy, tmp_path_factory):
    """A training run folder as `tinyloc train` writes it (model.keras + config.json)."""
    tagger = small_tagger("mamba", seed=3)
    tagger.compile(optimizer=keras.optimizers.Adam(0.02))
    tagger.fit(toy.train.X, toy.train.y, batch_size=16, epochs=3, verbose=0)
    run = tmp_path_factory.mktemp("runs") / "mamba"
    run.mkdir()
    tagger.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"data_dir": str(toy.path), "build_config": tagger.build_config}))
    return run


@pytest.mark.slow
def test_convert_and_evaluate_commands(run_folder, toy, tmp_path, capsys):
    from tinyloc_tf.cli import main

    out = tmp_path / "m.tflite"
    assert main(["convert", str(run_folder), "--quant", "int8", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["tflm_deployable"] is True and summary["float_ops"] == {} and out.is_file()
    assert main(["convert", str(run_folder), "--quant", "int8", "--out", str(out)]) == 2  # exists
    assert "already exists" in capsys.readouterr().err

    assert main(["evaluate", str(out), "--data", str(toy.path), "--run", str(run_folder), "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"macro_f1", "accuracy", "flash_bytes", "arena_bytes", "params", "agreement", "quant", "runtime"} <= set(report)
    assert report["agreement"] >= 0.9 and report["quant"] == "int8"

    too_small = max(1, report["arena_bytes"] // 2048)
    assert main(["evaluate", str(out), "--data", str(toy.path), "--arena-kb", str(too_small), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"needs {report['arena_bytes']} bytes" in err

    qat = tmp_path / "q.tflite"
    assert main(["convert", str(run_folder), "--quant", "qat", "--qat-epochs", "1", "--out", str(qat)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["float_ops"] == {} and summary["qat"]["epochs"] == 1 and len(summary["qat"]["history"]) == 1
    assert read_metadata(qat)["qat"]["best_epoch"] in (0, 1)

    dyn = tmp_path / "d.tflite"
    assert main(["convert", str(run_folder), "--quant", "dynamic", "--data", str(toy.path), "--out", str(dyn)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(dyn), "--data", str(toy.path), "--runtime", "litert", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["runtime"] == "litert"
