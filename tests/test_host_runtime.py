"""Host runtimes (TFLM wheel, LiteRT), input/output quantization and the arena search,
including a TFLM that crashes on small arenas (it must never take the caller down)."""

from __future__ import annotations

import sys
import textwrap

import keras
import numpy as np
import pytest

from tinyloc_tf.compression.convert import convert_model
from tinyloc_tf.deployment import host
from tinyloc_tf.errors import TinylocError

STEPS, FEATURES, CLASSES = 3, 4, 3


def windows(count, features=FEATURES, seed=0):
    return np.random.default_rng(seed).random((count, STEPS, features)).astype(np.float32)


def dense_model(features=FEATURES, hidden=8):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((STEPS, features))
    h = keras.layers.Dense(hidden, activation="tanh")(inputs)
    return keras.Model(inputs, keras.layers.Dense(CLASSES)(h))


@pytest.fixture(scope="module")
def int8_model():
    model = dense_model()
    return model, convert_model(model, "int8", representative=windows(32))


# --------------------------------------------------------------------------- quantization


def test_quantize_rounds_half_away_from_zero_and_saturates():
    io = host.TensorIO(shape=(1, 4), dtype=np.dtype(np.int8), scale=0.5, zero_point=-1)
    x = np.array([0.25, -0.25, 0.75, 1000.0, -1000.0], dtype=np.float32)
    # x / scale = 0.5, -0.5, 1.5 -> 1, -1, 2 (away from zero), then + zero point, clipped
    np.testing.assert_array_equal(host.quantize(x, io), np.array([0, -2, 1, 127, -128], dtype=np.int8))
    np.testing.assert_allclose(host.dequantize(np.array([-1, 1], np.int8), io), [0.0, 1.0])
    plain = host.TensorIO(shape=(1, 2), dtype=np.dtype(np.float32), scale=0.0, zero_point=0)
    assert not plain.quantized and host.quantize(x, plain) is not None


def test_run_tflite_int8_matches_keras_in_both_runtimes(int8_model, tmp_path):
    model, buf = int8_model
    X = windows(10, seed=1)
    expected = np.asarray(model(X))
    path = tmp_path / "m.tflite"
    path.write_bytes(buf)
    tflm = host.run_tflite(path, X, runtime="tflm")
    litert = host.run_tflite(buf, X, runtime="litert")
    assert tflm.shape == (10, STEPS, CLASSES) and tflm.dtype == np.float32
    spread = float(np.ptp(expected))
    assert np.abs(tflm - expected).max() <= 0.05 * spread
    assert np.abs(tflm - litert).max() <= 2 * host.make_runner(buf, "litert").output.scale + 1e-6


def test_run_tflite_refuses_bad_input(int8_model):
    _, buf = int8_model
    with pytest.raises(TinylocError, match="per window"):
        host.run_tflite(buf, windows(2, features=FEATURES + 1))
    with pytest.raises(TinylocError, match="unknown runtime"):
        host.run_tflite(buf, windows(2), runtime="tvm")
    with pytest.raises(TinylocError, match="not a TFLite flatbuffer"):
        host.run_tflite(b"\x00" * 64, windows(2))


# --------------------------------------------------------------------------- arena


def test_arena_search_finds_the_smallest_working_arena(int8_model):
    _, buf = int8_model
    needed = host.find_arena_bytes(buf)
    assert host.arena_works(buf, needed) and not host.arena_works(buf, needed - 1)
    # TFLM's own "Arena allocation total" is an estimate: it leaves out planning scratch
    # (needed can be a third more) and sometimes counts a few alignment bytes too many.
    printed = host.printed_arena_bytes(buf)
    assert printed is not None and 0.5 * needed <= printed <= needed + 64


def test_too_small_arena_is_a_clear_error_not_a_crash(int8_model):
    _, buf = int8_model
    needed = host.find_arena_bytes(buf)
    with pytest.raises(host.ArenaTooSmallError) as caught:
        host.run_tflite(buf, windows(2), runtime="tflm", arena_kb=1)
    assert caught.value.needed == needed and caught.value.given == 1024
    assert f"TFLM needs {needed} bytes" in str(caught.value)
    # With the size it asked for, the same call works.
    out = host.run_tflite(buf, windows(2), runtime="tflm", arena_kb=needed / 1024)
    assert out.shape == (2, STEPS, CLASSES)


def test_arena_search_survives_a_tflm_that_segfaults(int8_model, tmp_path, monkeypatch):
    """A child standing in for TFLM: segfaults below 4500 bytes, fails cleanly below 5000."""
    _, buf = int8_model
    child = tmp_path / "crashing_child.py"
    child.write_text(textwrap.dedent("""
        import os, signal, sys
        from tinyloc_tf.deployment import host

        def try_arena(buf, size):
            if size < 4500:
                os.kill(os.getpid(), signal.SIGSEGV)
            return size >= 5000

        host._try_arena = try_arena
        sys.exit(host._child_main(sys.argv[1:]))
    """))
    monkeypatch.setattr(host, "_child_command", lambda *args: [sys.executable, str(child), *args])
    assert host.find_arena_bytes(buf) == 5000
    assert not host.arena_works(buf, 100)  # a crash reads as "too small"
    with pytest.raises(host.ArenaTooSmallError, match="needs 5000 bytes"):
        host.make_runner(buf, "tflm", arena_bytes=2000)


def test_model_tflm_cannot_prepare_is_named_not_deployable():
    """Dynamic-range quantization of a 2048-weight Dense makes a hybrid FULLY_CONNECTED."""
    model = dense_model(features=256, hidden=8)
    buf = convert_model(model, "dynamic")
    with pytest.raises(host.NotDeployableError, match="not deployable on TFLM.*FULLY_CONNECTED"):
        host.find_arena_bytes(buf)
    assert "hybrid" in host.tflm_blocker(buf)
    X = windows(3, features=256)
    np.testing.assert_allclose(host.run_tflite(buf, X, runtime="litert"), np.asarray(model(X)), atol=0.05)
