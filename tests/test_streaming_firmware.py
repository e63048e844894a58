"""Streaming firmware (AOT backend) on QEMU: a step model over a recorded stream, sample by sample.

The firmware carries the state in its own buffers and decodes with the C online decoder; its
emissions must equal host TFLM's bit for bit and its decisions the Python decoder's.
"""

from __future__ import annotations

import json

import pytest

from helpers import tiny_run_folder
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
    status, _, err = _deploy([str(step_tflite), "--streaming", "--backend", "tflm", "--data", str(stream_data.path)],
                             capsys)
    assert status == 2 and "--streaming runs with --backend aot" in err
    status, _, err = _deploy([str(step_tflite), "--streaming", "--data", str(stream_data.path), "--windows", "4"],
                             capsys)
    assert status == 2 and "--windows apply to window models" in err
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
