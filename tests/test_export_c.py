"""`tinyloc export-c`: C++ sources from an int8 .tflite, checked without TensorFlow or TFLM's C++.

The model here is built directly as a TFLite flatbuffer (one int8 FULLY_CONNECTED over every
time step), so these tests need neither TensorFlow nor a converter run; the host TFLM of the
tflite-micro wheel runs it for the expected emissions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers import CLASSES, crf_params, fc_model_bytes
from tinyloc_tf.compression.flatbuffer import read_model
from tinyloc_tf.deployment import export_c as ec
from tinyloc_tf.errors import TinylocError

REPO = Path(__file__).resolve().parents[1]

T, F, K = 4, 6, 3


@pytest.fixture(scope="module")
def fc_tflite(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "fc.tflite"
    path.write_bytes(fc_model_bytes())
    return path


@pytest.fixture(scope="module")
def exported(fc_tflite, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export")
    ec.export_c(fc_tflite, out, windows=5)
    return out


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(
    "op, method",
    [
        ("FULLY_CONNECTED", "AddFullyConnected"),
        ("CONV_2D", "AddConv2D"),
        ("DEPTHWISE_CONV_2D", "AddDepthwiseConv2D"),
        ("BATCH_MATMUL", "AddBatchMatMul"),
        ("SPLIT_V", "AddSplitV"),
        ("UNIDIRECTIONAL_SEQUENCE_LSTM", "AddUnidirectionalSequenceLSTM"),
        ("L2_NORMALIZATION", "AddL2Normalization"),
        ("RELU6", "AddRelu6"),
        ("RSQRT", "AddRsqrt"),
    ],
)
def test_resolver_method_names(op, method):
    assert ec.resolver_method(op) == method


def test_int8_only_kernels_are_registered_only_where_every_instance_is_int8(fc_tflite):
    """The int8-only registration links no other type's code, so it is chosen only when no
    instance of the operator reads or writes another type; the rest get the generic one."""
    from tinyloc_tf.compression.flatbuffer import read_model, tensor_type_names

    fb = read_model(fc_tflite)
    assert ec.int8_only_ops(fb) == {"FULLY_CONNECTED"}
    assert ec.op_registration("FULLY_CONNECTED", {"FULLY_CONNECTED"}) == (
        "AddFullyConnected(tflite::Register_FULLY_CONNECTED_INT8())")
    assert ec.op_registration("FULLY_CONNECTED", set()) == "AddFullyConnected()"
    assert ec.op_registration("RESHAPE", {"RESHAPE"}) == "AddReshape()"  # TFLM has no int8-only RESHAPE

    int16 = {name: code for code, name in tensor_type_names().items()}["INT16"]
    fb.tensors[fb.outputs[0]].type = int16
    assert ec.int8_only_ops(fb) == set()


def test_hexfloat_is_exact_float32():
    values = np.random.default_rng(3).normal(scale=50, size=200).astype(np.float32)
    for v in values:
        text = ec._hexfloat(v)
        assert text.endswith("f")
        assert np.float32(float.fromhex(text[:-1])) == v
    with pytest.raises(TinylocError, match="non-finite"):
        ec._hexfloat(np.inf)


def test_pick_windows_spreads_and_clips():
    assert ec.pick_windows(100, 5).tolist() == [0, 25, 50, 74, 99]
    assert ec.pick_windows(3, 10).tolist() == [0, 1, 2]
    assert ec.pick_windows(0, 4).size == 0


def test_inspect_reads_geometry_quantization_and_ops(fc_tflite):
    info = ec.inspect_tflite(fc_tflite.read_bytes())
    assert (info.steps, info.features, info.classes) == (T, F, K)
    assert info.ops == ["FULLY_CONNECTED"]
    assert info.input_zero_point == -128 and info.output_zero_point == 5
    assert info.output_scale == pytest.approx(0.05)
    assert info.schema_version == 3


def test_inspect_rejects_float_and_non_tflite(tmp_path):
    with pytest.raises(TinylocError, match="not a TFLite flatbuffer"):
        ec.inspect_tflite(b"\x00" * 32, "junk")
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

    from tinyloc_tf.compression.flatbuffer import pack_model, unpack_model

    model = unpack_model(fc_model_bytes(metadata=False))
    model.subgraphs[0].tensors[0].type = s.TensorType.FLOAT32
    with pytest.raises(TinylocError, match=r"int8 input .* FLOAT32 \[1, 4, 6\]"):
        ec.inspect_tflite(pack_model(model), "float.tflite")


# --------------------------------------------------------------------------- the export


def test_export_writes_every_file_with_host_expectations(exported, fc_tflite):
    manifest = json.loads((exported / "manifest.json").read_text())
    for name in ec.SOURCE_FILES + ("test_windows.npz",):
        assert (exported / name).is_file(), name
    assert not list(exported.glob("*.partial*"))
    assert manifest["windows"] == 5 and manifest["split"] == "random"
    assert manifest["model"]["ops"] == ["FULLY_CONNECTED"]

    arrays = ec.load_windows(exported)
    assert arrays["inputs"].shape == (5, T, F) and arrays["inputs"].dtype == np.int8
    # The expected emissions are TFLM's: recompute the FC in integer arithmetic as a check of
    # the model and of the export's plumbing (TFLM rounding may differ by one LSB).
    assert arrays["host_emissions"].shape == (5, T, K)
    from tinyloc_tf.deployment.host import run_tflite
    from tinyloc_tf.decoding import viterbi_decode

    info = ec.inspect_tflite(fc_tflite.read_bytes())
    x = (arrays["inputs"].astype(np.float32) - info.input_zero_point) * np.float32(info.input_scale)
    host = run_tflite(fc_tflite, x, runtime="tflm")
    deq = (arrays["host_emissions"].astype(np.float32) - info.output_zero_point) * np.float32(info.output_scale)
    np.testing.assert_array_equal(host, deq)
    crf = crf_params()
    np.testing.assert_array_equal(arrays["host_path"], viterbi_decode(deq, crf["transitions"], crf["start"], crf["end"]))
    assert (arrays["labels"] == -1).all()

    settings = (exported / "model_settings.cc").read_text()
    assert '"hall \\"main\\""' in settings  # class names escaped
    ops = (exported / "model_ops.h").read_text()
    assert "kModelOpCount = 1;" in ops
    assert "resolver.AddFullyConnected(tflite::Register_FULLY_CONNECTED_INT8())" in ops
    assert '#include "tensorflow/lite/micro/kernels/fully_connected.h"' in ops
    data = (exported / "model_data.cc").read_text()
    manifest = json.loads((exported / "manifest.json").read_text())
    # The embedded model is the .tflite without its tinyloc metadata, plus its arena plan
    # (deployment/tflm_plan.py).
    assert manifest["arena_plan"] and manifest["metadata_dropped_bytes"] > 0
    embedded = ec.firmware_model(fc_tflite.read_bytes(), {})
    assert len(embedded) == manifest["firmware_model_bytes"]
    assert set(read_model(embedded).metadata()) == {"OfflineMemoryAllocation"}
    assert f"g_tinyloc_model[{manifest['firmware_model_bytes']}]" in data and "alignas(16)" in data


def test_export_with_prepared_data_uses_real_windows_and_labels(fc_tflite, tmp_path):
    rng = np.random.default_rng(7)
    data = tmp_path / "data"
    data.mkdir()
    for split, n in (("train", 12), ("val", 6), ("test", 9)):
        np.savez(data / f"{split}.npz", X=rng.uniform(0, 1, (n, T, F)).astype(np.float32),
                 y=rng.integers(0, K, (n, T)).astype(np.int32))
    meta = {"features": [f"ap{i}" for i in range(F)], "classes": CLASSES, "T": T,
            "scaling": {"min": [-110.0] * F, "max": [-30.0] * F}, "labels": "room", "source": "test",
            "source_sha256": "0" * 64, "counts": {}}
    (data / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "gen"
    manifest = ec.export_c(fc_tflite, out, data_dir=data, windows=4)
    arrays = ec.load_windows(out)
    with np.load(data / "test.npz") as test:
        np.testing.assert_array_equal(arrays["labels"], test["y"][arrays["indices"]])
    assert arrays["indices"].tolist() == [0, 3, 5, 8]
    assert manifest["split"] == "test" and manifest["data_fingerprint"]


def test_export_rejects_mismatched_data(fc_tflite, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "val", "test"):
        np.savez(data / f"{split}.npz", X=np.zeros((2, T, F + 1), np.float32), y=np.zeros((2, T), np.int32))
    meta = {"features": [f"ap{i}" for i in range(F + 1)], "classes": CLASSES, "T": T,
            "scaling": {"min": [0.0] * (F + 1), "max": [1.0] * (F + 1)}, "labels": "room", "source": "t",
            "source_sha256": "0" * 64, "counts": {}}
    (data / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(TinylocError, match="F=7.*F=6"):
        ec.export_c(fc_tflite, tmp_path / "gen", data_dir=data)


def test_crf_side_file_for_models_without_metadata(tmp_path):
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(fc_model_bytes(metadata=False))
    with pytest.raises(TinylocError, match="no 'tinyloc' metadata"):
        ec.export_c(bare, tmp_path / "a", windows=1)
    side = tmp_path / "crf.json"
    side.write_text(json.dumps({**crf_params(), "classes": ["a", "b", "c"]}))
    manifest = ec.export_c(bare, tmp_path / "b", windows=2, crf_file=side)
    assert manifest["crf_source"] == str(side)
    assert '"a", "b", "c"' in (tmp_path / "b" / "model_settings.cc").read_text()
    side.write_text(json.dumps({"transitions": [[0.0]], "start": [0.0], "end": [0.0]}))
    with pytest.raises(TinylocError, match="do not match the model's 3 classes"):
        ec.export_c(bare, tmp_path / "c", windows=1, crf_file=side)


# --------------------------------------------------------------------------- the C++ compiles

HOST_CHECK = r"""
#include <stdio.h>
#include "model_data.h"
#include "model_settings.h"
#include "test_windows.h"
int main() {
  long sum_in = 0, sum_em = 0, sum_path = 0;
  for (int w = 0; w < kTestWindows; ++w) {
    for (int i = 0; i < kSteps * kFeatures; ++i) sum_in += kTestInput[w][i];
    for (int i = 0; i < kSteps * kClasses; ++i) sum_em += kHostEmissions[w][i];
    for (int t = 0; t < kSteps; ++t) sum_path += kHostPath[w][t] + kTrueLabel[w][t];
  }
  printf("%d %d %d %d %u %ld %ld %ld %.9g %.9g %s %.9g\n", kSteps, kFeatures, kClasses, kTestWindows,
         g_tinyloc_model_len, sum_in, sum_em, sum_path, (double)kOutputScale, (double)kCrfTransitions[1],
         kClassNames[1], (double)kFeatureMin[0]);
  return ((unsigned long)g_tinyloc_model % 16) != 0;
}
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="host g++ not installed")
def test_generated_sources_compile_and_hold_the_exported_values(exported, tmp_path):
    main = tmp_path / "check.cc"
    main.write_text(HOST_CHECK)
    exe = tmp_path / "check"
    sources = [str(main)] + [str(exported / n) for n in ("model_data.cc", "model_settings.cc", "test_windows.cc")]
    subprocess.run(["g++", "-std=c++17", "-Wall", "-Werror", f"-I{exported}", *sources, "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()
    arrays = ec.load_windows(exported)
    manifest = json.loads((exported / "manifest.json").read_text())
    crf = crf_params()
    assert out[:4] == [str(T), str(F), str(K), "5"]
    assert int(out[4]) == manifest["firmware_model_bytes"]
    assert int(out[5]) == int(arrays["inputs"].astype(np.int64).sum())
    assert int(out[6]) == int(arrays["host_emissions"].astype(np.int64).sum())
    assert int(out[7]) == int(arrays["host_path"].sum() + arrays["labels"].sum())
    assert np.float32(out[8]) == np.float32(manifest["model"]["output_scale"])
    assert np.float32(out[9]) == np.float32(crf["transitions"][0][1])
    assert out[10:13] == ["hall", '"main"', "-110"]


@pytest.mark.skipif(shutil.which("arm-none-eabi-g++") is None, reason="arm-none-eabi-g++ not installed")
def test_generated_sources_compile_for_cortex_m(exported, tmp_path):
    for name in ("model_data.cc", "model_settings.cc", "test_windows.cc"):
        subprocess.run(
            ["arm-none-eabi-g++", "-std=c++17", "-mcpu=cortex-m4", "-mthumb", "-Wall", "-Werror", f"-I{exported}",
             "-c", str(exported / name), "-o", str(tmp_path / (name + ".o"))],
            check=True,
        )


def test_export_c_command(fc_tflite, tmp_path, capsys):
    from tinyloc_tf.cli import main

    assert main(["export-c", str(fc_tflite), "--out", str(tmp_path / "gen"), "--windows", "3"]) == 0
    assert "ops FULLY_CONNECTED" in capsys.readouterr().out
    assert (tmp_path / "gen" / "manifest.json").is_file()
    assert main(["export-c", str(tmp_path / "nope.tflite"), "--out", str(tmp_path / "x")]) == 2
    assert "nope.tflite: no such .tflite file" in capsys.readouterr().err


def test_firmware_embeds_the_compact_quantization_tflm_reads():
    """A per-channel model is embedded with one scale per bias and one zero point per weight,
    and without the tinyloc metadata: smaller, and the same outputs in TFLM (the only runtime the
    firmware has)."""
    from tinyloc_tf.compression.flatbuffer import tensor_quantization
    from tinyloc_tf.deployment.host import run_tflite

    buf = (Path(__file__).resolve().parents[1] / "models" / "ujiindoorloc" / "32kb.tflite").read_bytes()
    manifest = {}
    embedded = ec.firmware_model(buf, manifest)
    assert manifest["compact_quantization"] > 0 and manifest["firmware_model_bytes"] == len(embedded)
    fb = read_model(embedded)
    assert set(fb.metadata()) == {"OfflineMemoryAllocation"} and manifest["metadata_dropped_bytes"] > 0
    per_channel = [tensor_quantization(t) for t in fb.tensors if t.quantization is not None]
    assert any(len(scales) > 1 for scales, _, _ in per_channel if scales is not None)
    assert all(len(zero_points) == 1 for _, zero_points, _ in per_channel if zero_points is not None)
    shape = list(fb.tensors[fb.inputs[0]].shape)
    x = np.random.default_rng(3).uniform(0, 1, (8, *shape[1:])).astype(np.float32)
    np.testing.assert_array_equal(run_tflite(embedded, x), run_tflite(buf, x))
    assert len(embedded) < len(buf) - manifest["metadata_dropped_bytes"]
