"""Streaming Mamba: step model, online decoders (numpy and C), streams, int8 step in TFLM."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers import tiny_run_folder
from tinyloc_tf.data.prepared import Split
from tinyloc_tf.data.streams import split_streams, stream_windows
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.decoding import viterbi_decode
from tinyloc_tf.decoding import (
    FixedLagViterbi, ForwardFilter, decode_stream, exp_nonpositive,
)

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "tflm_app"
needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="host g++ not installed")


# --------------------------------------------------------------------------- numpy decoders


def _crf(rng, k):
    return rng.normal(0, 1.5, (k, k)).astype(np.float32), rng.normal(0, 1, k).astype(np.float32)


def test_exp_nonpositive_is_exp_to_float32_rounding():
    x = -np.concatenate([np.linspace(0, 90, 5001), [0.0, 1e-30, 87.3, 200.0]]).astype(np.float32)
    got = exp_nonpositive(x)
    want = np.exp(x.astype(np.float64))
    normal = want > 1e-37
    # x * log2(e) rounds to float32 first: the relative error grows to about |x| * 6e-8.
    assert np.max(np.abs(got[normal] / want[normal] - 1)) < 1e-5
    assert got[x == 0][0] == 1.0 and got[-1] == 0.0


def test_fixed_lag_viterbi_with_full_lag_is_viterbi_without_end():
    rng = np.random.default_rng(1)
    k, n = 6, 40
    transitions, start = _crf(rng, k)
    emissions = rng.normal(0, 2, (n, k)).astype(np.float32)
    full = viterbi_decode(emissions, transitions, start, np.zeros(k, np.float32))
    assert np.array_equal(decode_stream(emissions, transitions, start, "viterbi", lag=n), full)
    assert np.array_equal(decode_stream(emissions, transitions, start, "viterbi", lag=n + 7), full)


def test_fixed_lag_decisions_come_lag_samples_late():
    rng = np.random.default_rng(2)
    transitions, start = _crf(rng, 4)
    decoder = FixedLagViterbi(transitions, start, lag=3)
    seen = []
    for t, e in enumerate(rng.normal(0, 1, (10, 4)).astype(np.float32)):
        decided = decoder.step(e)
        assert [s for s, _ in decided] == ([t - 3] if t >= 3 else [])
        seen += decided
    seen += decoder.flush()
    assert [s for s, _ in seen] == list(range(10))


def test_lag_zero_is_argmax_of_viterbi_score_and_filter_is_argmax_of_marginal():
    rng = np.random.default_rng(3)
    k, n = 5, 8
    transitions, start = _crf(rng, k)
    emissions = rng.normal(0, 1, (n, k)).astype(np.float32)
    lag0 = decode_stream(emissions, transitions, start, "viterbi", lag=0)
    filtered = decode_stream(emissions, transitions, start, "filter")
    for t in range(n):  # brute force over all prefixes y_0..y_t
        import itertools

        best, marginal = {}, np.zeros(k)
        for path in itertools.product(range(k), repeat=t + 1):
            score = start[path[0]] + sum(emissions[s, path[s]] for s in range(t + 1))
            score += sum(transitions[path[s - 1], path[s]] for s in range(1, t + 1))
            best[path[-1]] = max(best.get(path[-1], -np.inf), score)
            marginal[path[-1]] += np.exp(score)
        assert lag0[t] == max(best, key=best.get)
        assert filtered[t] == int(np.argmax(marginal))
        if t >= 4:
            break  # k**(t+1) paths: enough


def test_decoders_reject_bad_input():
    rng = np.random.default_rng(4)
    transitions, start = _crf(rng, 3)
    with pytest.raises(TinylocError, match="lag"):
        FixedLagViterbi(transitions, start, lag=-1)
    with pytest.raises(TinylocError, match=r"\[3\]"):
        ForwardFilter(transitions, start).step(np.zeros(4))
    with pytest.raises(TinylocError, match="NaN"):
        ForwardFilter(transitions, start).step(np.array([0, np.nan, 0]))
    with pytest.raises(TinylocError, match="unknown online decoder"):
        decode_stream(np.zeros((2, 3)), transitions, start, "beam")


# --------------------------------------------------------------------------- C decoders


@pytest.fixture(scope="module")
def decoder_exe(tmp_path_factory) -> Path:
    if shutil.which("g++") is None:
        pytest.skip("host g++ not installed")
    exe = tmp_path_factory.mktemp("stream_decoder") / "streaming_decoder_host"
    subprocess.run(
        ["g++", "-std=c++17", "-O2", "-Wall", "-Werror", "-ffp-contract=off", f"-I{APP / 'src'}",
         str(APP / "src" / "streaming_decoder.cc"), str(APP / "tests" / "streaming_decoder_host.cc"), "-o", str(exe)],
        check=True,
    )
    return exe


def _hex(values) -> str:
    return " ".join(float(v).hex() for v in np.asarray(values, dtype=np.float32).reshape(-1))


def _c_decode(exe, emissions, transitions, start, method, lag) -> np.ndarray:
    n, k = emissions.shape
    text = f"{n} {k} {method} {lag}\n{_hex(transitions)}\n{_hex(start)}\n{_hex(emissions)}\n"
    out = subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True).stdout
    return np.array(out.split(), dtype=np.int32)


@needs_gxx
def test_c_exp_is_bit_identical(decoder_exe):
    rng = np.random.default_rng(5)
    x = -np.concatenate([rng.exponential(5, 2000), [0, 125 / 1.4427, 87.33654, 87.33655, 150]]).astype(np.float32)
    out = subprocess.run([str(decoder_exe)], input=f"exp {len(x)}\n{_hex(x)}\n", capture_output=True, text=True,
                         check=True).stdout.split()
    got = np.array([float.fromhex(v) for v in out], dtype=np.float32)
    assert np.array_equal(got.view(np.uint32), exp_nonpositive(x).view(np.uint32))


@needs_gxx
@pytest.mark.parametrize("method,lag", [("filter", 0), ("viterbi", 0), ("viterbi", 1), ("viterbi", 5), ("viterbi", 20)])
def test_c_decoder_paths_equal_numpy(decoder_exe, method, lag):
    rng = np.random.default_rng(10 + lag)
    for k, n, scale in ((4, 300, 3.0), (10, 500, 8.0), (59, 60, 30.0), (3, 7, 1.0)):
        transitions, start = _crf(rng, k)
        # Quantized emissions make exact ties common, so tie-breaking is tested too.
        emissions = (np.round(rng.normal(0, scale, (n, k)) * 4) / 4).astype(np.float32)
        want = decode_stream(emissions, transitions, start, method, lag)
        assert np.array_equal(_c_decode(decoder_exe, emissions, transitions, start, method, lag), want), (k, n)


# --------------------------------------------------------------------------- streams


def test_split_streams_rebuilds_runs_from_overlapping_windows():
    rng = np.random.default_rng(6)
    runs = [rng.random((50, 3)).astype(np.float32), rng.random((30, 3)).astype(np.float32)]
    labels = [rng.integers(0, 4, 50).astype(np.int32), rng.integers(0, 4, 30).astype(np.int32)]
    X, y = [], []
    for run, lab in zip(runs, labels):
        for s in range(0, len(run) - 20 + 1, 10):
            X.append(run[s:s + 20])
            y.append(lab[s:s + 20])
    streams = split_streams(Split(np.stack(X), np.stack(y)))
    assert [len(s) for s in streams] == [50, 30]
    for stream, run, lab in zip(streams, runs, labels):
        assert np.array_equal(stream.X, run) and np.array_equal(stream.y, lab)


def test_stream_windows_cut_every_long_enough_stream_to_its_end():
    rng = np.random.default_rng(5)
    runs = [rng.random((80, 3)).astype(np.float32), rng.random((30, 3)).astype(np.float32)]
    labels = [rng.integers(0, 4, len(r)).astype(np.int32) for r in runs]
    X, y = [], []
    for run, lab in zip(runs, labels):
        for s in range(0, len(run) - 20 + 1, 10):
            X.append(run[s:s + 20])
            y.append(lab[s:s + 20])
    split = Split(np.stack(X), np.stack(y))
    Xw, yw, summary = stream_windows(split, 45)
    # the 80-sample run: starts 0, 10, 20, 30 at the windows' hop, then 35 so the tail is in
    assert Xw.shape == (5, 45, 3) and yw.shape == (5, 45)
    for k, start in enumerate([0, 10, 20, 30, 35]):
        assert np.array_equal(Xw[k], runs[0][start:start + 45]) and np.array_equal(yw[k], labels[0][start:start + 45])
    # the 30-sample run has no 45-sample window: counted, not silently lost
    assert summary == {"steps": 45, "hop": 10, "windows": 5, "streams": 1, "samples": 80,
                       "short_streams": 1, "short_samples": 30}
    same = stream_windows(split, 20)
    assert np.array_equal(same[0], split.X) and same[2] is None
    with pytest.raises(TinylocError, match="shorter than the prepared windows"):
        stream_windows(split, 10)
    with pytest.raises(TinylocError, match="no training stream is that long"):
        stream_windows(split, 90)


@pytest.mark.slow
def test_train_steps_trains_mamba_on_longer_windows(stream_data, tmp_path, capsys):
    """--train-steps: Mamba learns from windows cut from the training streams and is scored on the
    prepared ones; MDCSA, whose positions fix its window, and distillation refuse it."""
    import json

    from tinyloc_tf.cli import main

    args = ["--data", str(stream_data.path), "--hidden", "4", "--layers", "1", "--epochs", "2",
            "--int8-friendly", "--train-steps", "60"]
    assert main(["train", "--model", "mamba", *args, "--out", str(tmp_path / "m")]) == 0
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    # four 200-sample training runs, hop 10: starts 0..140 each
    assert metrics["training_windows"] == {"steps": 60, "hop": 10, "windows": 60, "streams": 4, "samples": 800,
                                           "short_streams": 0, "short_samples": 0}
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["training"]["recipe"]["train_steps"] == 60 and config["build_config"]["steps"] == 20
    assert main(["refit", str(tmp_path / "m"), "--out", str(tmp_path / "r")]) == 0
    capsys.readouterr()
    assert main(["train", "--model", "mdcsa", *args, "--out", str(tmp_path / "d")]) == 2
    assert "mdcsa cannot train on longer windows" in capsys.readouterr().err
    assert main(["distill", "--teacher", str(tmp_path / "m"), "--student-model", "mamba", *args,
                 "--out", str(tmp_path / "k")]) == 2
    assert "--train-steps 60: distilled students" in capsys.readouterr().err
    # A sweep applies it to its Mamba runs (MDCSA keeps the prepared windows: Recipe.for_family);
    # with distilled students, or with MDCSA alone, it is refused before any training.
    sweep = ["sweep", "--data", str(stream_data.path), "--out", str(tmp_path / "s"), "--train-steps", "60"]
    assert main(sweep) == 2
    assert "--train-steps 60: distilled students" in capsys.readouterr().err
    assert main([*sweep, "--family", "mdcsa", "--no-distill"]) == 2
    assert "--train-steps 60: mdcsa cannot" in capsys.readouterr().err
    assert main([*sweep, "--no-distill", "--train-steps", "10"]) == 2  # shorter than the prepared windows
    assert "--train-steps 10 is shorter than the prepared windows" in capsys.readouterr().err
    assert not any((tmp_path / name).exists() for name in ("d", "k", "s"))


# --------------------------------------------------------------------------- step model


@pytest.fixture(scope="module")
def mamba_h8l2():
    """Untrained, seeded: its weights do not depend on which tests ran before in the process."""
    import keras

    from tinyloc_tf.models import build_model

    keras.utils.set_random_seed(0)
    return build_model("mamba", features=6, classes=4, hidden=8, layers=2, steps=20, int8_friendly=True)


def test_step_model_from_zero_state_reproduces_the_window_model(mamba_h8l2):
    from tinyloc_tf.models.mamba_step import build_step_model, run_stream

    rng = np.random.default_rng(7)
    X = rng.random((2, 20, 6)).astype(np.float32)
    window = np.asarray(mamba_h8l2.encoder(X))
    step = build_step_model(mamba_h8l2)
    assert [tuple(t.shape) for t in step.inputs] == [(1, 1, 1, 6), (1, 1, 3, 16), (1, 1, 16, 16), (1, 1, 3, 16), (1, 1, 16, 16)]
    for x, w in zip(X, window):
        got = run_stream(step, x)
        assert np.max(np.abs(got - w)) <= 1e-5 * max(1.0, np.abs(w).max())
    # The layers are the tagger's own: a weight change shows in the step model.
    assert step.get_layer("step_encoder").encoder is mamba_h8l2.encoder
    # The int8 graph's norm (one L2_NORMALIZATION) and the int16x8 graph's (no ADD of the
    # epsilon) are the RMSNorm up to its epsilon.
    for norm in ("l2", "no_epsilon"):
        short = build_step_model(mamba_h8l2, norm=norm)
        for x, w in zip(X, window):
            got = run_stream(short, x)
            assert np.max(np.abs(got - w)) <= 1e-4 * max(1.0, np.abs(w).max())
    with pytest.raises(TinylocError, match="unknown step-model norm 'rms'"):
        build_step_model(mamba_h8l2, norm="rms")


def test_step_model_refuses_mdcsa():
    from tinyloc_tf.models import build_model
    from tinyloc_tf.models.mamba_step import build_step_model

    mdcsa = build_model("mdcsa", features=6, classes=4, hidden=8, layers=1, steps=20)
    with pytest.raises(TinylocError, match="stays a window model"):
        build_step_model(mdcsa)


@pytest.mark.slow
def test_int8_step_model_runs_in_tflm_and_tracks_float(mamba_h8l2):
    from tinyloc_tf.compression.streaming import convert_streaming, streaming_layout
    from tinyloc_tf.deployment.streaming import StreamRunner
    from tinyloc_tf.models.mamba_step import build_step_model, run_stream

    rng = np.random.default_rng(8)
    # A slowly drifting random walk, like RSSI: state matters across samples.
    walk = np.clip(0.5 + np.cumsum(rng.normal(0, 0.05, (400, 6)), axis=0) * 0.2, 0, 1).astype(np.float32)
    result = convert_streaming(mamba_h8l2, [walk[:300]], quant="int8", representative_size=256)
    assert result.report["float_ops"] == {}
    layout = streaming_layout(result.tflite)
    assert layout["state_shapes"] == [[1, 3, 16], [1, 16, 16], [1, 3, 16], [1, 16, 16]]  # [1, D, N]
    # Per block: one RESHAPE (dt into a column; every other tensor is 4-D already, and the
    # input term (dt x)^T B is a BATCH_MATMUL with adj_x), its shape in its options rather than
    # a constant input, and one SLICE (the new conv buffer); state inputs take their outputs'
    # scales, so no QUANTIZE is appended. The readout reads the [D, N] state with adj_y: no
    # TRANSPOSE.
    from collections import Counter

    from tinyloc_tf.compression.flatbuffer import read_model

    fb = read_model(result.tflite)
    ops = Counter(fb.op_name(op) for op in fb.operators)
    assert ops["RESHAPE"] == 2 and ops["SLICE"] == 2, ops
    assert not {"STRIDED_SLICE", "TRANSPOSE", "QUANTIZE"} & set(ops), ops
    assert result.report["reshape_shapes_as_options"] == 2
    for op in fb.operators:
        if fb.op_name(op) == "RESHAPE":
            assert len(op.inputs) == 1 and list(op.builtinOptions.newShape) == list(fb.tensors[op.outputs[0]].shape)
    from ai_edge_litert.interpreter import Interpreter

    Interpreter(model_content=result.tflite).allocate_tensors()  # LiteRT reads the shape from the options
    # Each block's RMSNorm is one L2_NORMALIZATION, not MUL, MEAN, ADD, RSQRT, MUL.
    assert ops["L2_NORMALIZATION"] == 2 and "MEAN" not in ops and "RSQRT" not in ops, ops
    products = [(op.builtinOptions.adjX, op.builtinOptions.adjY) for op in fb.operators if fb.op_name(op) == "BATCH_MATMUL"]
    assert sorted(products) == [(False, True), (False, True), (True, False), (True, False)], products
    assert result.report["requantized_state_outputs"] == []
    runner = StreamRunner(result.tflite)
    _, emissions = runner.run(walk[300:])
    want = run_stream(build_step_model(mamba_h8l2), walk[300:])
    span = np.ptp(want)
    assert np.mean(np.abs(emissions - want)) / span < 0.03
    assert np.mean(np.argmax(emissions, 1) == np.argmax(want, 1)) > 0.9
    # Same stream twice: the runner starts each run from the zero state.
    assert np.array_equal(runner.run(walk[300:])[1], emissions)
    with pytest.raises(TinylocError, match="window model"):
        from tinyloc_tf.compression.convert import convert_model

        streaming_layout(convert_model(mamba_h8l2, "float32"))


@pytest.mark.slow
def test_int16x8_step_model_drops_calibration_ranges_and_keeps_its_outputs(mamba_h8l2):
    """TFLite's 16x8 quantizer leaves float min/max in every tensor's quantization; the
    stripped file has none, is smaller, and runs identically."""
    from tinyloc_tf.compression.flatbuffer import unpack_model
    from tinyloc_tf.compression.streaming import convert_streaming
    from tinyloc_tf.deployment.streaming import StreamRunner

    rng = np.random.default_rng(10)
    walk = np.clip(0.5 + np.cumsum(rng.normal(0, 0.05, (300, 6)), axis=0) * 0.2, 0, 1).astype(np.float32)

    def ranges(buf):
        return sum(len(t.quantization.min) for t in unpack_model(buf).subgraphs[0].tensors
                   if t.quantization is not None and t.quantization.min is not None)

    kept = convert_streaming(mamba_h8l2, [walk[:200]], quant="int16x8", representative_size=128, strip=False).tflite
    stripped = convert_streaming(mamba_h8l2, [walk[:200]], quant="int16x8", representative_size=128).tflite
    assert ranges(kept) > 0 and ranges(stripped) == 0
    assert len(stripped) < len(kept)
    # Retying the conv-buffer state input leaves the converter's QUANTIZE before CONCATENATION
    # an identity; it is taken out (drop_identity_requantize).
    from tinyloc_tf.compression.flatbuffer import read_model
    from tinyloc_tf.compression.streaming import _quantization

    fb = read_model(stripped)
    for op in fb.operators:
        if fb.op_name(op) == "QUANTIZE":
            source, target = fb.tensors[op.inputs[0]], fb.tensors[op.outputs[0]]
            assert (source.type, _quantization(source)) != (target.type, _quantization(target))
    for a, b in zip(StreamRunner(kept).run(walk), StreamRunner(stripped).run(walk)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_int16x8_step_model_scales_are_powers_of_two(mamba_h8l2):
    """Every int16 scale of the int16x8 step model is a power of two, every bias sits at its
    input's scale times its weights', and rounding a file's scales up changes its outputs by
    little: a scale only grows (by less than 2x) and constants keep their values."""
    from tinyloc_tf.compression.flatbuffer import pack_model, read_model, tensor_quantization, unpack_model
    from tinyloc_tf.compression.streaming import WEIGHT_OPS, convert_streaming, power_of_two_scales
    from tinyloc_tf.deployment.streaming import StreamRunner
    from tinyloc_tf.models.mamba_step import build_step_model, run_stream

    rng = np.random.default_rng(12)
    walk = np.clip(0.5 + np.cumsum(rng.normal(0, 0.05, (400, 6)), axis=0) * 0.2, 0, 1).astype(np.float32)
    result = convert_streaming(mamba_h8l2, [walk[:300]], quant="int16x8", representative_size=256)
    assert result.report["power_of_two_scales"] > 0
    fb = read_model(result.tflite)

    def int16_scales(model):
        return {i: float(tensor_quantization(t)[0][0]) for i, t in enumerate(model.tensors)
                if model.type_name(t) == "INT16" and tensor_quantization(t)[0] is not None}

    scales = int16_scales(fb)
    assert scales and all(np.log2(s) == np.round(np.log2(s)) for s in scales.values()), scales
    for op in fb.operators:
        if fb.op_name(op) in WEIGHT_OPS and len(op.inputs) > 2 and op.inputs[2] >= 0:
            x, w, b = (fb.tensors[i] for i in op.inputs[:3])
            want = (tensor_quantization(x)[0][0] * tensor_quantization(w)[0]).astype(np.float32)
            if fb.op_name(op) == "FULLY_CONNECTED":  # one bias scale kept: flatbuffer.per_tensor_bias_quantization
                want = want[:1]
            np.testing.assert_array_equal(tensor_quantization(b)[0], want)
    again, done = power_of_two_scales(result.tflite)  # nothing left to round
    assert done == {"power_of_two_scales": 0, "identity_requantize_dropped": 0} and again == result.tflite

    # Scales 1.3 times larger and off the powers of two (a calibrated file's), rounded up again;
    # LOGISTIC's output keeps the 2^-15 TFLM requires of it.
    fixed = {i for op in fb.operators if fb.op_name(op) == "LOGISTIC" for i in op.outputs}
    moved = set(scales) - fixed
    model = unpack_model(result.tflite)
    for i in moved:
        model.subgraphs[0].tensors[i].quantization.scale = np.array([scales[i] * 1.3], dtype=np.float32)
    off = pack_model(model)
    snapped, done = power_of_two_scales(off)
    assert fixed and done["power_of_two_scales"] == len(moved)
    fb_off, fb_snapped = read_model(off), read_model(snapped)
    for i, s in int16_scales(fb_snapped).items():
        if i in fixed:
            continue
        assert scales[i] * 1.3 <= s < 2 * scales[i] * 1.3
        before, after = fb_off.tensor_data(fb_off.tensors[i]), fb_snapped.tensor_data(fb_snapped.tensors[i])
        if before is not None:  # a constant keeps its value, to within a step
            assert np.max(np.abs(after * s - before * scales[i] * 1.3)) <= s
    # Both track the float step model about equally (on this model, mean |error| / span
    # 0.00598 with the scales 1.3 times larger, 0.00599 rounded up from those).
    want = run_stream(build_step_model(mamba_h8l2), walk[300:])
    errors = {}
    for name, buf in (("off", off), ("snapped", snapped)):
        _, got = StreamRunner(buf).run(walk[300:])
        errors[name] = np.mean(np.abs(got - want)) / np.ptp(want)
        assert np.mean(np.argmax(got, 1) == np.argmax(want, 1)) > 0.9, name
    assert errors["snapped"] < 1.5 * errors["off"], errors


@pytest.mark.slow
@pytest.mark.parametrize("quant, per_tensor_weights", [("int8", False), ("int8", True), ("int16x8", False),
                                                        ("int16x8", True)],
                         ids=["int8-per-channel", "int8-per-tensor", "int16x8", "int16x8-per-tensor"])
def test_aot_step_model_is_bit_exact_with_tflm_over_a_stream(mamba_h8l2, tmp_path, quant, per_tensor_weights):
    import ctypes

    from tinyloc_tf.compression.streaming import convert_streaming
    from tinyloc_tf.deployment.aot import compile_tflite
    from tinyloc_tf.deployment.aot.host import build_shared_library, host_compiler
    from tinyloc_tf.deployment.host import quantize
    from tinyloc_tf.deployment.streaming import StreamRunner

    try:
        host_compiler()
    except TinylocError as exc:
        pytest.skip(str(exc))
    rng = np.random.default_rng(9)
    walk = np.clip(0.5 + np.cumsum(rng.normal(0, 0.05, (300, 6)), axis=0) * 0.2, 0, 1).astype(np.float32)
    buf = convert_streaming(mamba_h8l2, [walk[:200]], quant=quant, representative_size=128,
                            per_tensor_weights=per_tensor_weights).tflite
    if per_tensor_weights:  # every weight tensor has one scale, and the metadata says so
        with pytest.raises(TinylocError, match="int8 and int16x8 step models, not float32"):
            convert_streaming(mamba_h8l2, quant="float32", per_tensor_weights=True)
        from tinyloc_tf.compression.flatbuffer import read_model, tensor_quantization
        from tinyloc_tf.compression.metadata import read_metadata

        fb = read_model(buf)
        weights = [t for t in fb.tensors if fb.type_name(t) == "INT8" and fb.tensor_data(t) is not None]
        assert weights and all(len(tensor_quantization(t)[0]) == 1 for t in weights)
        assert read_metadata(buf)["weights"] == "per-tensor"
    report = compile_tflite(buf, tmp_path / "aot")
    assert "runner_invoke_io" in Path(report.header).read_text()
    lib = ctypes.CDLL(str(build_shared_library([report.source], tmp_path / "lib.so", include_dirs=report.include_dirs)))
    runner = StreamRunner(buf)
    want, _ = runner.run(walk)
    ins = [np.zeros(io.shape, io.dtype) for io in runner.inputs]
    outs = [np.zeros(io.shape, io.dtype) for io in runner.outputs]
    for value, io in zip(ins[1:], runner.inputs[1:]):
        value[...] = io.zero_point
    pointers = ctypes.c_void_p * len(ins)
    got = []
    for t in range(len(walk)):
        ins[0][...] = quantize(walk[t:t + 1], runner.inputs[0])
        assert lib.runner_invoke_io(pointers(*[a.ctypes.data for a in ins]), pointers(*[a.ctypes.data for a in outs])) == 0
        got.append(outs[0].reshape(-1).copy())
        for value, out in zip(ins[1:], outs[1:]):
            value[...] = out  # the state goes back byte for byte
    assert np.array_equal(np.stack(got), want)
    # `tinyloc compile --check` draws every input (sample and states) at random.
    from tinyloc_tf.deployment.aot.host import check_against_tflm

    (tmp_path / "step.tflite").write_bytes(buf)
    check = check_against_tflm(tmp_path / "step.tflite", report, 4)
    assert check["values"] > 0 and check["equal"] == check["values"]


@pytest.mark.slow
def test_int16x8_per_tensor_weights_are_rounded_once_from_float_and_track_float(mamba_h8l2):
    """TFLite's 16x8 quantizer cannot quantize the depthwise convolution per tensor: the
    per-channel file's weights are quantized again, once, from the float step model's."""
    import keras

    from tinyloc_tf.compression.flatbuffer import indices, read_model, tensor_quantization
    from tinyloc_tf.compression.metadata import read_metadata
    from tinyloc_tf.compression.streaming import WEIGHT_OPS, convert_streaming, weights_per_tensor_from_float
    from tinyloc_tf.deployment.streaming import StreamRunner
    from tinyloc_tf.models import build_model
    from tinyloc_tf.models.mamba_step import build_step_model, run_stream

    rng = np.random.default_rng(11)
    walk = np.clip(0.5 + np.cumsum(rng.normal(0, 0.05, (700, 6)), axis=0) * 0.2, 0, 1).astype(np.float32)
    # Calibrated on the whole walk: the error scored below is rounding, not unseen ranges clipped.
    channel = convert_streaming(mamba_h8l2, [walk], quant="int16x8", representative_size=512)
    tensor = convert_streaming(mamba_h8l2, [walk], quant="int16x8", representative_size=512, per_tensor_weights=True)
    assert tensor.report["weights"] == "per-tensor" and read_metadata(tensor.tflite)["weights"] == "per-tensor"
    assert "weights" not in read_metadata(channel.tflite)
    # CMSIS-NN's int16 FULLY_CONNECTED takes per-tensor weights only: deploy says so up front.
    from tinyloc_tf.deployment.firmware import cmsis_nn_refusal

    assert cmsis_nn_refusal(tensor.tflite) is None
    assert "FULLY_CONNECTED) has int16 activations and per-channel weights" in cmsis_nn_refusal(channel.tflite)
    fb, fb_c = read_model(tensor.tflite), read_model(channel.tflite)
    fb_f = read_model(convert_streaming(mamba_h8l2, quant="float32").tflite)
    floats = [op for op in fb_f.operators if fb_f.op_name(op) in WEIGHT_OPS]
    # The same graph as the per-channel file, operator for operator; only weights and biases differ.
    assert [fb.op_name(op) for op in fb.operators] == [fb_c.op_name(op) for op in fb_c.operators]
    weight_ops = [op for op in fb.operators if fb.op_name(op) in WEIGHT_OPS]
    # dt_proj runs twice per block (a plain and a RELU-fused copy) on one weight and one bias
    # tensor, requantized once.
    assert len(weight_ops) == len(floats) == 14 and tensor.report["requantized_weight_tensors"] == 12
    assert sum(fb.op_name(op) == "DEPTHWISE_CONV_2D" for op in weight_ops) == 2
    per_channel = dropped = 0
    for op, op_c in zip(fb.operators, fb_c.operators):
        if fb.op_name(op) not in WEIGHT_OPS:
            continue
        x, w, *bias = indices(op.inputs)
        scales, zero_points, _ = tensor_quantization(fb.tensors[w])
        assert len(scales) == 1 and zero_points.tolist() == [0]
        channel_scales = len(tensor_quantization(fb_c.tensors[indices(op_c.inputs)[1]])[0])
        per_channel += channel_scales > 1
        dropped += channel_scales - 1
        q = fb.tensor_data(fb.tensors[w])
        # Some float operator's weights give exactly these: S = max|w| / 127, q = round(w / S),
        # and its bias round(b / (input_scale * S)) at that scale (int64), to within one step: the
        # int16 scales become powers of two afterwards and the int64 bias is rounded again.
        matches = 0
        for twin in floats:
            f = fb_f.tensor_data(fb_f.tensors[indices(twin.inputs)[1]])
            if f.shape != q.shape:
                continue
            S = np.float32(np.abs(f).max() / 127)
            if scales[0] != S or not np.array_equal(q, np.clip(np.round(f / np.float64(S)), -127, 127)):
                continue
            if bias and bias[0] >= 0:
                b_scale = tensor_quantization(fb.tensors[bias[0]])[0]
                want_scale = np.float32(tensor_quantization(fb.tensors[x])[0][0] * S)
                b_float = fb_f.tensor_data(fb_f.tensors[indices(twin.inputs)[2]])
                assert fb.type_name(fb.tensors[bias[0]]) == "INT64" and b_scale.tolist() == [want_scale]
                if np.max(np.abs(fb.tensor_data(fb.tensors[bias[0]]) - np.round(b_float / np.float64(want_scale)))) > 1:
                    continue
            matches += 1
        assert matches >= 1, fb.op_name(op)
    assert per_channel == 14  # TFLite's own file has a scale per output channel everywhere
    assert len(tensor.tflite) <= len(channel.tflite) - 4 * dropped  # a float32 scale less, at least, per channel

    # It tracks the float step model about as well as the per-channel file does (on this model,
    # mean |error| / span 0.0003 against 0.0009); the bound is meant to fail a rewrite that rounds
    # the per-channel int8 weights a second time, or rounds down instead of to nearest.
    want = run_stream(build_step_model(mamba_h8l2), walk[300:])
    errors = {}
    for name, result in (("channel", channel), ("tensor", tensor)):
        _, emissions = StreamRunner(result.tflite).run(walk[300:])
        errors[name] = np.mean(np.abs(emissions - want)) / np.ptp(want)
        assert np.mean(np.argmax(emissions, 1) == np.argmax(want, 1)) > 0.9, name
    assert errors["tensor"] < 0.002 and errors["tensor"] < 1.5 * errors["channel"], errors

    # Another model's float weights are nobody's twin: the rewrite refuses, naming the operator.
    keras.utils.set_random_seed(1)
    other = build_model("mamba", features=6, classes=4, hidden=8, layers=2, steps=20, int8_friendly=True)
    with pytest.raises(TinylocError, match=r"operator \d+ \(\w+, weights \[.*has no float twin"):
        weights_per_tensor_from_float(channel.tflite, convert_streaming(other, quant="float32").tflite)


@pytest.mark.slow
def test_convert_and_evaluate_streaming_commands(stream_data, tmp_path_factory, tmp_path, capsys):
    import json

    from tinyloc_tf.cli import main

    run = tiny_run_folder(tmp_path_factory, stream_data, "mamba")
    out = tmp_path / "step.tflite"
    assert main(["convert", str(run), "--quant", "int8", "--streaming", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["streaming"] and summary["float_ops"] == {} and summary["tflm_deployable"]
    assert main(["evaluate", str(out), "--streaming", "--data", str(stream_data.path), "--run", str(run),
                 "--lags", "0", "3", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["streams"] == 2 and report["samples"] == 300
    assert set(report["decoders"]) == {"filter", "viterbi_lag0", "viterbi_lag3"}
    assert 0.0 <= report["decoders"]["viterbi_lag3"]["macro_f1"] <= 1.0
    assert report["float_agreement"]["argmax"] > 0.8

    # A reset schedule: the state goes back to zero every N samples, exactly as N-sample pieces.
    from tinyloc_tf.deployment.streaming import StreamRunner

    runner = StreamRunner(out)
    X = split_streams(stream_data.test, name="test")[0].X
    raw, _ = runner.run(X, reset_every=40)
    pieces = np.concatenate([runner.run(X[a : a + 40])[0] for a in range(0, len(X), 40)])
    np.testing.assert_array_equal(raw, pieces)
    assert not np.array_equal(raw, runner.run(X)[0])
    assert main(["evaluate", str(out), "--streaming", "--data", str(stream_data.path), "--reset-every", "40",
                 "--lags", "3", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["reset_every"] == 40
    assert main(["evaluate", str(out), "--data", str(stream_data.path), "--reset-every", "40", "--quiet"]) == 2
    assert "--reset-every applies to --streaming" in capsys.readouterr().err

    # int16 activations and state (int8 weights): no float op, and closer to the float step model.
    wide = tmp_path / "step16.tflite"
    assert main(["convert", str(run), "--quant", "int16x8", "--streaming", "--out", str(wide)]) == 0
    summary16 = json.loads(capsys.readouterr().out)
    assert summary16["float_ops"] == {} and summary16["state_bytes"] == 2 * summary["state_bytes"]
    assert main(["evaluate", str(wide), "--streaming", "--data", str(stream_data.path), "--run", str(run),
                 "--lags", "0", "3", "--quiet"]) == 0
    report16 = json.loads(capsys.readouterr().out)
    for part in ("mean_abs_diff_first_fifth", "mean_abs_diff_last_fifth"):
        assert report16["float_agreement"][part] < report["float_agreement"][part] / 4
    assert main(["convert", str(run), "--quant", "int16x8", "--out", str(tmp_path / "w16.tflite")]) == 2
    assert "add --streaming" in capsys.readouterr().err

    # A step model is not a window model, and the other way round; MDCSA has no step form.
    assert main(["evaluate", str(out), "--data", str(stream_data.path), "--quiet"]) == 2
    assert "is a streaming step model" in capsys.readouterr().err.replace("\n", " ")
    assert main(["export-c", str(out), "--out", str(tmp_path / "c")]) == 2
    assert "deploy it with `tinyloc deploy --streaming`" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
    assert main(["convert", str(run), "--quant", "dynamic", "--streaming", "--out", str(tmp_path / "d.tflite")]) == 2
    assert "--streaming converts with --quant" in capsys.readouterr().err
    window = tmp_path / "window.tflite"
    assert main(["convert", str(run), "--quant", "int8", "--out", str(window)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(window), "--streaming", "--data", str(stream_data.path), "--quiet"]) == 2
    assert "not a streaming step model" in capsys.readouterr().err
    mdcsa = tiny_run_folder(tmp_path_factory, stream_data, "mdcsa")
    assert main(["convert", str(mdcsa), "--quant", "int8", "--streaming", "--out", str(tmp_path / "m.tflite")]) == 2
    assert "stays a window model" in capsys.readouterr().err


# --------------------------------------------------------------------------- sweep variants


def test_sweep_compresses_mamba_runs_into_scored_step_models(stream_data, tmp_path_factory):
    """stream-int8 / stream-int16x8: the step model, scored over whole streams with fixed-lag
    Viterbi exactly as ``evaluate --streaming`` scores it; MDCSA runs have no such variant."""
    import json

    from tinyloc_tf.compression.variants import ConvertOptions
    from tinyloc_tf.deployment.streaming import evaluate_streaming
    from tinyloc_tf.training.artifacts import variant_path
    from tinyloc_tf.workflows.compress import compress_run

    sweep_runs = tmp_path_factory.mktemp("sweep")
    mamba = shutil.copytree(tiny_run_folder(tmp_path_factory, stream_data, "mamba"), sweep_runs / "mamba-H4L1")
    options = ConvertOptions(stream_lag=3, stream_reset_every=40)
    records = compress_run(mamba, stream_data, ["int8", "stream-int8", "stream-int16x8"], options)
    assert set(records) == {"int8", "stream-int8", "stream-int16x8"}
    record = records["stream-int8"]
    assert record["deployable"] and record["runtime"] == "tflm" and record["arena_bytes"] > 0
    assert record["streaming"] == {"decoder": "viterbi", "lag": 3, "reset_every": 40,
                                   "state_bytes": record["streaming"]["state_bytes"],
                                   "operators": record["streaming"]["operators"]}
    assert record["test"]["steps"] == 300 and len(record["test"]["confusion_matrix"]) == 3
    assert records["stream-int16x8"]["streaming"]["state_bytes"] == 2 * record["streaming"]["state_bytes"]
    tflite = variant_path(mamba, "stream-int8")
    assert json.loads(variant_path(mamba, "stream-int8", ".json").read_text()) == record
    assert tflite.stat().st_size == record["flash_bytes"]
    for split in ("val", "test"):
        same = evaluate_streaming(tflite, stream_data, split=split, lags=(3,), reset_every=40)
        assert same["decoders"]["viterbi_lag3"]["macro_f1"] == pytest.approx(record[split]["macro_f1"])
        assert same["decoders"]["viterbi_lag3"]["accuracy"] == pytest.approx(record[split]["accuracy"])
    # The window int8 file is untouched by the streaming ones; a repeated call only reads back.
    assert records["int8"]["test"]["steps"] == stream_data.test.y.size
    assert compress_run(mamba, stream_data, ["stream-int8"], options)["stream-int8"] == record

    mdcsa = shutil.copytree(tiny_run_folder(tmp_path_factory, stream_data, "mdcsa"), sweep_runs / "mdcsa-H4L1")
    assert set(compress_run(mdcsa, stream_data, ["int8", "stream-int8"], options)) == {"int8"}
    assert not variant_path(mdcsa, "stream-int8", ".json").exists()


def test_window_conversion_refuses_a_streaming_variant(stream_data, tmp_path_factory):
    from tinyloc_tf.compression.convert import convert
    from tinyloc_tf.training.artifacts import load_run

    tagger, _ = load_run(tiny_run_folder(tmp_path_factory, stream_data, "mamba"))
    with pytest.raises(TinylocError, match="--streaming --quant int8"):
        convert(tagger, "stream-int8", stream_data.train.X)


def test_sink_operators_moves_a_large_early_result_next_to_its_reader():
    """big = MUL(x, x) [16, 4], read only by a later op: it moves just before that op (x is read
    by the next op anyway, so nothing is held longer); the others already sit before their
    first reader, or have none, and stay."""
    from tinyloc_tf.compression.flatbuffer import indices, tflite_schema
    from tinyloc_tf.compression.streaming import sink_operators

    s = tflite_schema()
    model = s.ModelT()
    model.buffers = [s.BufferT()]
    graph = s.SubGraphT()

    def tensor(shape):
        t = s.TensorT()
        t.shape, t.type, t.buffer = shape, s.TensorType.INT8, 0
        return t

    graph.tensors = [tensor([1, 4]), tensor([16, 4]), tensor([1, 4]), tensor([1, 4]), tensor([16, 4]), tensor([1, 1])]

    def op(inputs, outputs):
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = 0, inputs, outputs
        return o

    # 0: big = x * x; 1: small = x * x; 2: smaller = small * small; 3: sum = big + smaller;
    # 4: out = sum * sum (the graph output).
    graph.operators = [op([0, 0], [1]), op([0, 0], [2]), op([2, 2], [3]), op([1, 3], [4]), op([4, 4], [5])]
    graph.inputs, graph.outputs = [0], [5]
    assert sink_operators(model, graph) == 1
    assert [indices(o.outputs)[0] for o in graph.operators] == [2, 3, 1, 4, 5]


def test_drop_identity_requantize_rewires_readers_and_drops_what_is_left():
    """x -> QUANTIZE (same scale) -> y -> MUL(y, y) -> out: the MUL reads x, y and the QUANTIZE
    code are gone and the indices are renumbered; a QUANTIZE that rescales stays."""
    from tinyloc_tf.compression.flatbuffer import indices, opcode_name, tflite_schema
    from tinyloc_tf.compression.streaming import drop_identity_requantize

    s = tflite_schema()

    def tensor(scale):
        t = s.TensorT()
        t.shape, t.type, t.buffer = [1, 4], s.TensorType.INT16, 0
        t.quantization = s.QuantizationParametersT()
        t.quantization.scale, t.quantization.zeroPoint = [scale], [0]
        return t

    def op(code, inputs, outputs):
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = code, inputs, outputs
        return o

    def build(y_scale):
        model = s.ModelT()
        model.buffers = [s.BufferT()]
        model.operatorCodes = []
        for builtin in (s.BuiltinOperator.QUANTIZE, s.BuiltinOperator.MUL):
            code = s.OperatorCodeT()
            code.builtinCode = code.deprecatedBuiltinCode = builtin
            model.operatorCodes.append(code)
        graph = s.SubGraphT()
        graph.tensors = [tensor(0.01), tensor(y_scale), tensor(0.02)]  # x, y, out
        graph.operators = [op(0, [0], [1]), op(1, [1, 1], [2])]
        graph.inputs, graph.outputs = [0], [2]
        model.subgraphs = [graph]
        return model, graph

    model, graph = build(0.01)
    assert drop_identity_requantize(model, graph) == 1
    assert len(graph.tensors) == 2 and len(graph.operators) == 1
    assert [opcode_name(c) for c in model.operatorCodes] == ["MUL"] and graph.operators[0].opcodeIndex == 0
    assert indices(graph.operators[0].inputs) == [0, 0] and indices(graph.operators[0].outputs) == [1]
    assert indices(graph.inputs) == [0] and indices(graph.outputs) == [1]
    model, graph = build(0.03)  # this QUANTIZE rescales: it stays
    assert drop_identity_requantize(model, graph) == 0
    assert len(graph.operators) == 2 and [opcode_name(c) for c in model.operatorCodes] == ["QUANTIZE", "MUL"]
    # Two in a row (x -> y -> z -> MUL): the MUL reads x, not the dropped y.
    model, graph = build(0.01)
    graph.tensors.insert(2, tensor(0.01))
    graph.operators = [op(0, [0], [1]), op(0, [1], [2]), op(1, [2, 2], [3])]
    graph.outputs = [3]
    assert drop_identity_requantize(model, graph) == 2
    assert len(graph.tensors) == 2 and indices(graph.operators[0].inputs) == [0, 0]
