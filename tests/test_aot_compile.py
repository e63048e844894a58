"""The AOT compiler as a whole: memory planner, generated sources, errors, CLI,
and whole-model bit-exactness against TFLM for small MDCSA and Mamba models
(host build, and on QEMU through the firmware harness when the Cortex-M
toolchain is installed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from helpers import OpModel, options, run_wheel
from tinyloc_tf.deployment.aot import SUPPORTED_OPS, UnsupportedOperator, compile_tflite
from tinyloc_tf.deployment.aot.host import build_and_load, host_compiler
from tinyloc_tf.deployment.aot.planner import Buffer, greedy_plan
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.reports.card import find_models

# The model builders (helpers.py) and the reference interpreter come from the tflite-micro wheel.
pytest.importorskip("tflite_micro.tensorflow.lite.micro.python.schema_py_generated")
pytest.importorskip("tflite_micro.python.tflite_micro.runtime")


def _needs_cc():
    try:
        host_compiler()
    except TinylocError as exc:
        pytest.skip(str(exc))


# ---------------------------------------------------------------------------
# greedy planner

def _overlapping(a: Buffer, b: Buffer) -> bool:
    live = a.first <= b.last and b.first <= a.last
    space = a.offset < b.offset + b.size and b.offset < a.offset + a.size
    return live and space


def test_greedy_plan_never_overlaps_live_buffers():
    rng = np.random.default_rng(0)
    for trial in range(200):
        buffers = []
        for i in range(int(rng.integers(1, 25))):
            first = int(rng.integers(0, 30))
            buffers.append(Buffer(i, int(rng.integers(1, 300)), first, first + int(rng.integers(0, 6))))
        arena = greedy_plan(buffers, alignment=int(rng.choice([1, 4, 16])))
        for i, a in enumerate(buffers):
            assert a.offset + a.size <= arena
            for b in buffers[i + 1 :]:
                assert not _overlapping(a, b), (trial, a, b)
        # Never below the largest total alive at one step, never above the sum.
        steps = range(max(b.last for b in buffers) + 1)
        peak_live = max(sum(b.size for b in buffers if b.first <= s <= b.last) for s in steps)
        assert peak_live <= arena <= sum(b.size + 16 for b in buffers)


def test_greedy_plan_reuses_dead_memory():
    # a chain: each buffer dies when the next is written
    chain = [Buffer(i, 100, i, i + 1) for i in range(6)]
    assert greedy_plan(chain, alignment=4) == 200
    assert {b.offset for b in chain} == {0, 100}


# ---------------------------------------------------------------------------
# a small multi-op graph: views, in-place writes and arena reuse

def _chain_model():
    """x -> FC -> RESHAPE -> LOGISTIC -> MUL(x') -> TANH -> RESHAPE -> out."""
    rng = np.random.default_rng(1)
    m = OpModel()
    x = m.tensor([1, 6, 8], scale=np.float32(0.05), zero_point=3)
    w = m.tensor([10, 8], scale=np.full(10, 0.02, np.float32), zero_point=np.zeros(10, np.int64),
                 data=rng.integers(-127, 128, size=(10, 8), dtype=np.int8))
    h = m.tensor([1, 6, 10], scale=np.float32(0.1), zero_point=-5)
    m.op("FULLY_CONNECTED", [x, w, -1], [h], options("FullyConnectedOptionsT", keepNumDims=True),
         "FullyConnectedOptions")
    shp = m.tensor([2], "int32", data=np.array([6, 10], np.int32))
    h2 = m.tensor([6, 10], scale=np.float32(0.1), zero_point=-5)
    m.op("RESHAPE", [h, shp], [h2])
    g = m.tensor([6, 10], scale=np.float32(1 / 256), zero_point=-128)
    m.op("LOGISTIC", [h2], [g])
    p = m.tensor([6, 10], scale=np.float32(0.03), zero_point=1)
    m.op("MUL", [h2, g], [p], options("MulOptionsT"), "MulOptions")
    t = m.tensor([6, 10], scale=np.float32(1 / 128), zero_point=0)
    m.op("TANH", [p], [t])
    shp2 = m.tensor([3], "int32", data=np.array([1, 6, 10], np.int32))
    y = m.tensor([1, 6, 10], scale=np.float32(1 / 128), zero_point=0)
    m.op("RESHAPE", [t, shp2], [y])
    return m.build([x], [y])


def test_compile_writes_sources_and_report(tmp_path):
    report = compile_tflite(_chain_model(), tmp_path / "out")
    out = tmp_path / "out"
    names = {p.name for p in out.iterdir()}
    assert {"tinyloc_model.c", "tinyloc_model.h", "tl_kernels.h", "aot_report.json"} <= names
    assert not [n for n in names if n.startswith(".aot-")]  # no scratch left behind
    saved = json.loads((out / "aot_report.json").read_text())
    assert saved == report.to_dict()
    assert report.op_counts == {"FULLY_CONNECTED": 1, "LOGISTIC": 1, "MUL": 1, "RESHAPE": 2, "TANH": 1}
    assert report.kernel_calls == 4  # the reshapes are views, no copies
    assert report.views == 2
    # Arena: FC output (60 B) and MUL output at most; activations total counts every tensor.
    assert 0 < report.arena_bytes < report.activation_bytes_total
    assert report.arena_bytes <= report.arena_bytes_without_inplace <= report.arena_bytes_without_reuse
    header = (out / "tinyloc_model.h").read_text()
    assert "int runner_invoke(const int8_t* input, int8_t* output);" in header
    assert f"#define TL_MODEL_ARENA_BYTES {report.arena_bytes}" in header


def test_generated_c_is_strict_c99_and_matches_tflm(tmp_path, kernel_objects):
    buf = _chain_model()
    report = compile_tflite(buf, tmp_path / "out")
    cc = host_compiler()
    for src in report.sources:
        subprocess.run([cc, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-Wshadow",
                        "-I", str(tmp_path / "out"), "-c", src, "-o", str(tmp_path / "x.o")],
                       check=True, capture_output=True)
    model = build_and_load(report, kernel_objects=kernel_objects)
    assert model.arena_used == report.arena_bytes
    rng = np.random.default_rng(2)
    for _ in range(8):
        x = rng.integers(-128, 128, size=(1, 6, 8), dtype=np.int8)
        np.testing.assert_array_equal(model.invoke(x), run_wheel(buf, x))


@pytest.mark.parametrize("inplace", [True, False])
def test_memory_plan_variants_agree(inplace, tmp_path, kernel_objects):
    buf = _chain_model()
    report = compile_tflite(buf, tmp_path / "out", inplace=inplace, tables=not inplace, alignment=4)
    model = build_and_load(report, kernel_objects=kernel_objects)
    x = np.random.default_rng(3).integers(-128, 128, size=(1, 6, 8), dtype=np.int8)
    np.testing.assert_array_equal(model.invoke(x), run_wheel(buf, x))
    assert (report.inplace_writes > 0) == inplace


def test_symbol_prefix_names_everything(tmp_path):
    report = compile_tflite(_chain_model(), tmp_path, symbol_prefix="net1_")
    c = (tmp_path / "net1_tinyloc_model.c").read_text()
    assert "int net1_runner_invoke(" in c and "net1_tl_arena" in c
    assert " runner_invoke(" not in c.replace("net1_runner_invoke(", "")
    assert report.header.endswith("net1_tinyloc_model.h")
    with pytest.raises(TinylocError, match="prefix"):
        compile_tflite(_chain_model(), tmp_path, symbol_prefix="bad-name")


# ---------------------------------------------------------------------------
# errors name what is wrong

def test_unsupported_operator_is_named(tmp_path):
    m = OpModel()
    x = m.tensor([4], scale=np.float32(0.1), zero_point=0)
    y = m.tensor([4], scale=np.float32(0.1), zero_point=0)
    m.op("HARD_SWISH", [x], [y])
    with pytest.raises(UnsupportedOperator, match=r"HARD_SWISH \(operator 0\)"):
        compile_tflite(m.build([x], [y]), tmp_path)
    assert not list(tmp_path.glob("*.c"))  # nothing half-written
    assert "FULLY_CONNECTED" in SUPPORTED_OPS and "BATCH_MATMUL" in SUPPORTED_OPS


def test_int8_exp_fails_at_compile_time_naming_the_op(tmp_path):
    m = OpModel()
    x = m.tensor([4], scale=np.float32(0.1), zero_point=0)
    y = m.tensor([4], scale=np.float32(0.1), zero_point=0)
    m.op("EXP", [x], [y])
    with pytest.raises(UnsupportedOperator, match=r"operator 0 \(EXP\).*int8"):
        compile_tflite(m.build([x], [y]), tmp_path)


def test_bad_inputs_are_clear_errors(tmp_path):
    with pytest.raises(TinylocError, match="not found"):
        compile_tflite(tmp_path / "missing.tflite", tmp_path)
    bogus = tmp_path / "bogus.tflite"
    bogus.write_bytes(b"this is not a flatbuffer")
    with pytest.raises(TinylocError, match="TFL3"):
        compile_tflite(bogus, tmp_path)
    m = OpModel()
    x = m.tensor([4], "float32")
    y = m.tensor([4], "float32")
    m.op("RELU", [x], [y])
    with pytest.raises(TinylocError, match="must be quantized int8"):
        compile_tflite(m.build([x], [y]), tmp_path)
    m = OpModel()
    x = m.tensor([-1, 4], scale=np.float32(0.1), zero_point=0)
    y = m.tensor([-1, 4], scale=np.float32(0.1), zero_point=0)
    m.op("RELU", [x], [y])
    with pytest.raises(TinylocError, match="dynamic dimension"):
        compile_tflite(m.build([x], [y]), tmp_path)


def test_cli_compile_and_check(tmp_path, capsys):
    _needs_cc()
    from tinyloc_tf.cli import main

    model = tmp_path / "m.tflite"
    model.write_bytes(_chain_model())
    assert main(["compile", str(model), "--out", str(tmp_path / "c"), "--check", "3"]) == 0
    out = capsys.readouterr().out
    assert "memory plan: arena" in out and "check: 180 of 180 output values equal to TFLM" in out
    assert main(["compile", str(model), "--out", str(tmp_path / "j"), "--json", "--no-tables",
                 "--no-inplace"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["arena_bytes"] > 0 and report["sources"]
    assert report["tables"] is False and report["inplace_writes"] == 0
    assert main(["compile", str(model), "--out", str(tmp_path / "k"), "--alignment", "3"]) == 2
    assert "power of two" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# whole models: MDCSA and (int8-friendly) Mamba

@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    """Small int8 MDCSA and Mamba models with random weights, calibrated on
    random windows (conversion takes a few seconds each)."""
    pytest.importorskip("tensorflow")
    import keras

    from tinyloc_tf.compression.convert import convert_model, model_metadata
    from tinyloc_tf.models import build_model

    # Seeded weights: the same models whatever ran before in the session.
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    X = rng.random((48, 20, 8)).astype(np.float32)
    out = {}
    root = tmp_path_factory.mktemp("aot-models")
    # "mdcsa-x2": an ensemble of two MDCSA encoders (their mean: an ADD and a MUL more)
    for name, family, kwargs in (("mdcsa", "mdcsa", {"layers": 1}),
                                 ("mamba", "mamba", {"layers": 2, "int8_friendly": True}),
                                 ("mdcsa-x2", "mdcsa", {"layers": 1, "members": 2})):
        model = build_model(family, features=8, classes=4, hidden=8, steps=20, **kwargs)
        buf = convert_model(model, quant="int8", representative=X, metadata=model_metadata(model))
        path = root / f"{name}.tflite"
        path.write_bytes(buf)
        out[name] = path
    return out


@pytest.mark.slow
@pytest.mark.parametrize("family", ["mdcsa", "mamba", "mdcsa-x2"])
def test_whole_model_bit_exact_with_tflm(family, small_models, tmp_path, kernel_objects):
    from tflite_micro.python.tflite_micro import runtime

    buf = small_models[family].read_bytes()
    report = compile_tflite(buf, tmp_path / family)
    assert report.arena_bytes < report.activation_bytes_total
    # Strict build of the real model: no unused constants (folded biases), no warnings.
    subprocess.run([host_compiler(), "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", report.out_dir,
                    "-c", report.source, "-o", str(tmp_path / "m.o")], check=True, capture_output=True)
    model = build_and_load(report, kernel_objects=kernel_objects)
    interpreter = runtime.Interpreter.from_bytes(buf, arena_size=1 << 20)
    rng = np.random.default_rng(4)
    for _ in range(6):
        x = rng.integers(-128, 128, size=(1, 20, 8), dtype=np.int8)
        interpreter.set_input(x, 0)
        interpreter.invoke()
        want = np.asarray(interpreter.get_output(0)).reshape(-1)
        np.testing.assert_array_equal(model.invoke(x), want)


@pytest.mark.slow
@pytest.mark.parametrize("family,target", [("mdcsa", "m4"), ("mamba", "m55"), ("mdcsa-x2", "m4")])
def test_deploy_aot_on_qemu_is_bit_exact(family, target, small_models, tmp_path):
    from tinyloc_tf.deployment import firmware

    reason = firmware.deploy_skip_reason("aot")
    if reason:
        pytest.skip(reason)
    report = firmware.deploy(small_models[family], target=target, ram_kb=32, backend="aot",
                             windows=3, out_dir=tmp_path, progress=False)
    assert report["emissions_bit_exact"] and report["emission_agreement"] == 1.0
    assert report["backend"] == "aot" and report["arena_bytes"] > 0


def test_cross_compiles_for_cortex_m(tmp_path):
    """The generated C and kernels build for Cortex-M4F with the Arm GCC."""
    cc = shutil.which(os.environ.get("ARM_CC", "arm-none-eabi-gcc"))
    if cc is None:
        pytest.skip("arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi)")
    report = compile_tflite(_chain_model(), tmp_path)
    for src in report.sources:
        subprocess.run([cc, "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16",
                        "-Os", "-std=c99", "-Wall", "-Wextra", "-Werror", "-I", str(tmp_path),
                        "-c", src, "-o", str(tmp_path / "x.o")], check=True, capture_output=True)


# ---------------------------------------------------------------------------
# the shipped models (models/*/*.tflite)

MODELS = Path(__file__).resolve().parents[1] / "models"
SHIPPED = find_models(MODELS, streaming=False)
SHIPPED_STEP_MODELS = find_models(MODELS, streaming=True)


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_model_bit_exact_on_host_and_qemu(path, tmp_path, kernel_objects):
    from tflite_micro.python.tflite_micro import runtime

    from tinyloc_tf.deployment import firmware

    buf = path.read_bytes()
    report = compile_tflite(buf, tmp_path / "aot")
    model = build_and_load(report, kernel_objects=kernel_objects)
    interpreter = runtime.Interpreter.from_bytes(buf, arena_size=1 << 20)
    shape = tuple(interpreter.get_input_details(0)["shape"])
    rng = np.random.default_rng(7)
    for _ in range(4):
        x = rng.integers(-128, 128, size=shape, dtype=np.int8)
        interpreter.set_input(x, 0)
        interpreter.invoke()
        np.testing.assert_array_equal(model.invoke(x), np.asarray(interpreter.get_output(0)).reshape(-1))

    reason = firmware.deploy_skip_reason("aot")
    if reason:
        pytest.skip(f"host build bit-exact; QEMU part skipped: {reason}")
    budget = int(path.stem.removesuffix("kb"))  # 32kb.tflite must deploy within 32 KiB of RAM
    device = firmware.deploy(path, target="m4", ram_kb=budget, backend="aot", windows=4,
                             out_dir=tmp_path / "fw", progress=False)
    assert device["emissions_bit_exact"] and device["emission_agreement"] == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("path", SHIPPED_STEP_MODELS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_shipped_step_model_bit_exact_on_host(path, tmp_path):
    """The shipped streaming step models compile to AOT C that equals TFLM on random samples and
    states (every output: emissions and each state), as ``tinyloc compile --check`` runs it."""
    from tinyloc_tf.deployment.aot.host import check_against_tflm

    report = compile_tflite(path.read_bytes(), tmp_path / "aot")
    check = check_against_tflm(path, report, windows=8)
    assert check["windows"] == 8 and check["values"] > 0 and check["equal"] == check["values"]
