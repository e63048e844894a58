"""Streaming firmware (AOT and TFLM backends) on QEMU: a step model over a recorded stream, sample by sample.

The firmware carries the state in its own buffers and decodes with the C online decoder; its
emissions must equal host TFLM's bit for bit and its decisions the Python decoder's.
"""

from __future__ import annotations

import json

import pytest

from helpers import tiny_run_folder
from tinyloc_tf.compression.streaming import streaming_layout
from tinyloc_tf.deployment.firmware import deploy_skip_reason

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mamba_run(stream_data, tmp_path_factory):
    """A tiny Mamba (H4L1, 2 epochs) trained on the toy runs."""
    return tiny_run_folder(tmp_path_factory, stream_data, "mamba")


@pytest.fixture(scope="module")
def step_tflite(mamba_run, tmp_path_factory):
    from tinyloc_tf.cli import main

    out = tmp_path_factory.mktemp("step") / "step.tflite"
    assert main(["convert", str(mamba_run), "--quant", "int8", "--streaming", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def step16_tflite(mamba_run, tmp_path_factory):
    from tinyloc_tf.cli import main

    out = tmp_path_factory.mktemp("step16") / "step16.tflite"
    assert main(["convert", str(mamba_run), "--quant", "int16x8", "--streaming", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def step16pt_tflite(mamba_run, tmp_path_factory):
    from tinyloc_tf.cli import main

    out = tmp_path_factory.mktemp("step16pt") / "step16pt.tflite"
    assert main(["convert", str(mamba_run), "--quant", "int16x8", "--streaming", "--per-tensor-weights",
                 "--out", str(out)]) == 0
    return out


def _deploy(args, capsys):
    from tinyloc_tf.cli import main

    capsys.readouterr()
    status = main(["deploy", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("target, decoder, samples", [("m55", "viterbi", None), ("m4", "filter", 60)])
# --backend is left out: --streaming defaults to aot.
def test_streaming_firmware_is_bit_exact_with_host(step_tflite, stream_data, tmp_path, capsys,
                                                   target, decoder, samples):
    reason = deploy_skip_reason("aot", target)
    if reason:
        pytest.skip(reason)
    args = [str(step_tflite), "--streaming", "--target", target, "--data", str(stream_data.path),
            "--decoder", decoder, "--lag", "3", "--json-out", str(tmp_path / "report.json")]
    if samples:
        args += ["--samples", str(samples)]
    status, out, err = _deploy(args, capsys)
    assert status == 0, err
    report = json.loads(out)
    assert report == json.loads((tmp_path / "report.json").read_text())
    assert report["stream"]["samples"] == (samples or 150)  # the longest test stream
    assert report["emissions_bit_exact"] and report["emission_max_abs_diff"] == 0
    assert report["path_agreement"] == 1.0 and report["path_agreement_firmware_count"] == 1.0
    assert report["decoder"] == decoder and report["lag"] == (3 if decoder == "viterbi" else 0)
    per_sample = report["instructions_per_sample"]
    assert 0 < per_sample["min"] <= per_sample["median"] <= per_sample["max"]
    assert report["model_instructions_per_sample"]["max"] <= per_sample["max"]
    assert report["state_bytes"] > 0 and report["arena_bytes"] > 0
    assert report["ram_bytes"] <= 64 * 1024 and report["test_data_bytes"] > 0


def test_streaming_deploy_refuses_what_it_cannot_run(mamba_run, step_tflite, stream_data, tmp_path,
                                                     capsys):
    from tinyloc_tf.cli import main

    reason = deploy_skip_reason("aot", "m55")
    if reason:
        pytest.skip(reason)
    status, _, err = _deploy([str(step_tflite), "--streaming", "--backend", "aot", "--kernels", "reference",
                              "--data", str(stream_data.path)], capsys)
    assert status == 2 and "--kernels picks TFLM's kernels" in err
    status, _, err = _deploy([str(step_tflite), "--streaming", "--data", str(stream_data.path), "--windows", "4"],
                             capsys)
    assert status == 2 and "--windows apply to window models" in err
    status, _, err = _deploy([str(step_tflite), "--streaming", "--backend", "aot", "--profile",
                              "--data", str(stream_data.path)], capsys)
    assert status == 2 and "--profile times TFLM's kernels" in err
    status, _, err = _deploy([str(step_tflite), "--streaming"], capsys)
    assert status == 2 and "--streaming needs --data" in err
    status, _, err = _deploy([str(step_tflite), "--streaming", "--backend", "aot", "--data", str(stream_data.path),
                              "--stream", "7"], capsys)
    assert status == 2 and "--stream 7" in err and "streams 0..1" in err
    # A window model is not a step model.
    window = tmp_path / "window.tflite"
    assert main(["convert", str(mamba_run), "--quant", "int8", "--out", str(window)]) == 0
    status, _, err = _deploy([str(window), "--streaming", "--backend", "aot", "--data", str(stream_data.path)], capsys)
    assert status == 2 and "not a streaming step model" in err


def _tflm_library_missing(target, kernels):
    from tinyloc_tf.deployment import firmware as fw

    reason = deploy_skip_reason("tflm", target)
    if reason:
        return reason
    library = fw.tflm_library(fw.tflm_root(), fw.get_target(target), kernels, "release")
    return None if library.is_file() else f"no {kernels} library for {target} ({library})"


@pytest.mark.parametrize("quant, kernels", [("int8", "cmsis-nn"), ("int8", "reference"), ("int16x8", "reference"),
                                            ("int16x8-per-tensor", "cmsis-nn")])
def test_tflm_streaming_firmware_matches_the_host(quant, kernels, step_tflite, step16_tflite, step16pt_tflite,
                                                  stream_data, tmp_path, capsys):
    """TFLM's interpreter runs the step model too, int8 and int16x8 (int16 state), with the
    state in the harness' buffers: int8 bit-exact with the host TFLM, int16x8 within a step of it
    (the pinned TFLM's int16 RSQRT), the decoder's path identical. CMSIS-NN runs the int16x8
    model with per-tensor weights and refuses per-channel ones up front."""
    reason = _tflm_library_missing("m55", kernels)
    if reason:
        pytest.skip(reason)
    model = {"int8": step_tflite, "int16x8": step16_tflite, "int16x8-per-tensor": step16pt_tflite}[quant]
    profile = ["--profile"] if quant == "int16x8" else []  # the instructions per operator type, per sample
    if quant == "int16x8-per-tensor":
        status, _, err = _deploy([str(step16_tflite), "--streaming", "--backend", "tflm", "--kernels", kernels,
                                  "--target", "m55", "--data", str(stream_data.path)], capsys)
        assert status == 2 and "per-channel weights" in err and "--per-tensor-weights" in err
        if not _tflm_library_missing("m55", "reference"):  # no kernel set asked for: the reference ones
            status, out, err = _deploy([str(step16_tflite), "--streaming", "--backend", "tflm", "--target", "m55",
                                        "--data", str(stream_data.path), "--samples", "20"], capsys)
            assert status == 0, err
            assert json.loads(out)["kernels"] == "reference"
    status, out, err = _deploy([str(model), "--streaming", "--backend", "tflm", "--kernels", kernels, "--target",
                                "m55", "--data", str(stream_data.path), "--lag", "3", "--samples", "80", *profile],
                               capsys)
    assert status == 0, err
    report = json.loads(out)
    if profile:
        ops = {row["op"]: row for row in report["op_profile"]["ops"]}
        assert ops["FULLY_CONNECTED"]["calls"] > 0 and ops["MUL"]["instructions"] > 0
        assert 0 < sum(row["share"] for row in ops.values()) <= 1.0
        # The profiled build's invoke (its timer reads included) against the plain build's.
        plain = report["model_instructions_per_sample"]["median"]
        assert plain <= report["op_profile"]["instructions_per_inference"] < 1.2 * plain
    assert report["backend"] == "tflm" and report["kernels"] == kernels
    if quant == "int8":
        assert report["emissions_bit_exact"]
    else:
        # The pinned TFLM computes int16 RSQRT's output multiplier in float where the host wheel
        # (and the AOT C) use double (docs/aot.md): a step at most, on a few values.
        assert report["emission_max_abs_diff"] <= 1 and report["emission_agreement"] > 0.95
    assert report["path_agreement"] == 1.0
    int8_state = streaming_layout(step_tflite)["state_bytes"]
    assert report["state_bytes"] == (1 if quant == "int8" else 2) * int8_state
    assert report["arena_bytes"] > 0 and report["flash_breakdown"]["tflm"] > 10_000


def test_streaming_firmware_resets_its_state_on_schedule(step_tflite, stream_data, tmp_path, capsys):
    """--reset-every N: the firmware zeroes its state before samples N, 2N, ... like the host
    runner, so it stays bit-exact with the host's emissions computed the same way."""
    reason = deploy_skip_reason("aot", "m4")
    if reason:
        pytest.skip(reason)
    status, out, err = _deploy([str(step_tflite), "--streaming", "--target", "m4", "--data", str(stream_data.path),
                                "--samples", "50", "--reset-every", "7", "--lag", "2"], capsys)
    assert status == 0, err
    report = json.loads(out)
    assert report["reset_every"] == 7 and report["emissions_bit_exact"] and report["path_agreement"] == 1.0


@pytest.mark.parametrize("target", ["m55", "m4"])
def test_aot_runs_an_int16x8_step_model_bit_exact(step_tflite, step16_tflite, stream_data, target, capsys):
    """The AOT C takes the int16x8 step model (int16 state, the form that does not drift):
    bit-exact with host TFLM over the stream, the decoder's path identical."""
    reason = deploy_skip_reason("aot", target)
    if reason:
        pytest.skip(reason)
    status, out, err = _deploy([str(step16_tflite), "--streaming", "--target", target, "--data",
                                str(stream_data.path), "--lag", "3", "--samples", "80"], capsys)
    assert status == 0, err
    report = json.loads(out)
    assert report["backend"] == "aot"
    assert report["emissions_bit_exact"] and report["emission_max_abs_diff"] == 0
    assert report["path_agreement"] == 1.0
    assert report["state_bytes"] == 2 * streaming_layout(step_tflite)["state_bytes"]
