"""int16x8 element-wise AOT kernels against TensorFlow Lite Micro (the tflite-micro wheel).

Single-operator int16 models (zero point 0, as TFLM's int16 kernels expect) with random scales,
shapes, broadcasts and fused activations, compiled with ``compile_tflite`` and compared bit for
bit with the wheel on random int16 inputs. LOGISTIC sees every int16 value and RSQRT every
non-negative one.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest

from helpers import OpModel, options, run_wheel
from test_aot_kernels import broadcastable, check_variants, int16_inputs, r_shape
from tinyloc_tf.deployment.aot import compile_tflite
from tinyloc_tf.deployment.aot.host import HostModel, build_shared_library
from tinyloc_tf.deployment.aot.int16_elementwise import checked_log2, logistic_s16_params
from tinyloc_tf.deployment.aot.lowering import UnsupportedOperator
from tinyloc_tf.errors import TinylocError

pytest.importorskip("tflite_micro.tensorflow.lite.micro.python.schema_py_generated")
pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

VARIANTS = 10


def r_scale16(rng, lo=1e-5, hi=1e-2):
    """A random int16 activation scale (int16 scales are ~2^8 finer than int8 ones)."""
    return np.float32(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def every_int16_value_in_halves():
    """An input function whose calls come in pairs that hold every int16 value between them
    (for a tensor of 32,768 elements: the wheel's arena cannot hold 65,536 in and out)."""
    calls = {"n": 0, "values": None}

    def input_fn(rng, shape):
        n = int(np.prod(shape))
        if calls["n"] % 2 == 0:
            calls["values"] = rng.permutation(np.arange(-32768, 32768, dtype=np.int32)).astype(np.int16)
        half = calls["values"][(calls["n"] % 2) * n:][:n]
        calls["n"] += 1
        return half.reshape(shape)

    return input_fn


def every_non_negative_int16_value(rng, shape):
    values = np.resize(rng.permutation(np.arange(0, 32768, dtype=np.int32)), int(np.prod(shape)))
    return values.astype(np.int16).reshape(shape)


_OPTIONS = {
    "ADD": ("AddOptionsT", "AddOptions"),
    "SUB": ("SubOptionsT", "SubOptions"),
    "MUL": ("MulOptionsT", "MulOptions"),
}


def _binary_model(opname, x_shape, const_shape, out_shape, scales, const_data, const_first, activation=0,
                  zero_points=(0, 0, 0)):
    """``opname(x, const)`` (or ``opname(const, x)``) on int16 tensors; the model's one input is x."""
    (sx, sc, so), (zx, zc, zo) = scales, zero_points
    m = OpModel()
    x = m.tensor(x_shape, "int16", scale=sx, zero_point=zx)
    c = m.tensor(const_shape, "int16", scale=sc, zero_point=zc, data=const_data)
    y = m.tensor(out_shape, "int16", scale=so, zero_point=zo)
    o = options(_OPTIONS[opname][0], fusedActivationFunction=activation)
    m.op(opname, [c, x] if const_first else [x, c], [y], o, _OPTIONS[opname][1])
    operands = [f"const{const_shape}", f"x{x_shape}"]
    label = (f"{opname}({', '.join(operands if const_first else operands[::-1])}) act={activation} "
             f"scales={[float(s) for s in scales]} zps={list(zero_points)}")
    return label, m.build([x], [y]), x_shape


def _broadcast_shape(a, b):
    return list(np.broadcast_shapes(tuple(a), tuple(b)))


@pytest.mark.parametrize("opname", ["ADD", "SUB", "MUL"])
def test_int16_binary_ops_match_tflm(opname, kernel_objects, tmp_path):
    rng = np.random.default_rng(sum(map(ord, opname)) + 160)
    models = []

    def scales():
        if opname == "MUL":  # keep the product representable most of the time
            sx, sc = r_scale16(rng), r_scale16(rng)
            return sx, sc, np.float32(sx * sc * 32768 * rng.uniform(0.05, 2.0))
        return r_scale16(rng), r_scale16(rng), r_scale16(rng)

    def const(shape):
        return rng.integers(-32768, 32768, size=shape, dtype=np.int16)

    # The shapes the Mamba step model uses.
    step_shapes = [
        ([1, 1, 1, 16], []),
        ([1, 1, 16, 16], []),
        ([1, 1, 1, 16], [1, 1, 1, 16]),
        ([1, 1, 16, 1], [16, 16]),
        ([1, 1, 1, 8], [1, 1, 1, 1]),
    ]
    for k, (x_shape, c_shape) in enumerate(step_shapes):
        out = _broadcast_shape(x_shape, c_shape)
        models.append(_binary_model(opname, x_shape, c_shape, out, scales(), const(c_shape),
                                    const_first=k % 2 == 0))
    for v in range(VARIANTS):
        shape = r_shape(rng, int(rng.integers(1, 5)))
        other = broadcastable(rng, shape) if v % 3 else list(shape)
        if v == 4:
            other = []
        models.append(_binary_model(opname, shape, other, shape, scales(), const(other),
                                    const_first=v % 2 == 1, activation=int(rng.choice([0, 1, 2, 3]))))
    if opname in ("ADD", "SUB"):
        # TFLM's ADD / SUB take any zero points (its general path has the offsets).
        for v in range(2):
            shape = r_shape(rng, 3)
            zps = tuple(int(z) for z in rng.integers(-300, 300, size=3))
            models.append(_binary_model(opname, shape, [shape[-1]], shape, scales(), const([shape[-1]]),
                                        const_first=v == 1, activation=v, zero_points=zps))
    # Both operands the same (non-constant) tensor.
    m = OpModel()
    s1, so = r_scale16(rng), r_scale16(rng)
    if opname == "MUL":
        so = np.float32(s1 * s1 * 32768 * 0.5)
    a = m.tensor([3, 7], "int16", scale=s1, zero_point=0)
    y = m.tensor([3, 7], "int16", scale=so, zero_point=0)
    m.op(opname, [a, a], [y], options(_OPTIONS[opname][0]), _OPTIONS[opname][1])
    models.append((f"{opname} x,x", m.build([a], [y]), [3, 7]))
    assert check_variants(models, kernel_objects, tmp_path, input_fn=int16_inputs) > 0


def test_int16_sub_of_a_step_model_matches_tflm_on_every_input(kernel_objects, tmp_path):
    """1 - sigmoid as a converted step model has it: scales for which rescaling ratios computed
    in float (the pinned TFLM's sub_common.cc) and in double (the wheel) round apart, so six of
    the 65,536 outputs tell the two apart."""
    scales = (np.float32(2.0**-15), np.float32(3.0518509447574615e-05), np.float32(3.0497085390379652e-05))
    models = [_binary_model("SUB", [128, 256], [], [128, 256], scales, np.array(32767, np.int16),
                            const_first=True)]
    assert check_variants(models, kernel_objects, tmp_path, input_fn=every_int16_value_in_halves()) > 0


def _unary_model(opname, shape, in_scale, out_scale, in_dtype="int16", out_dtype="int16", in_zp=0, out_zp=0):
    m = OpModel()
    x = m.tensor(shape, in_dtype, scale=in_scale, zero_point=in_zp)
    y = m.tensor(shape, out_dtype, scale=out_scale, zero_point=out_zp)
    m.op(opname, [x], [y])
    return (f"{opname} {in_dtype}->{out_dtype} {shape} in=({float(in_scale)}, {in_zp}) "
            f"out=({float(out_scale)}, {out_zp})", m.build([x], [y]), shape)


def test_int16_logistic_matches_tflm_on_every_input(kernel_objects, tmp_path):
    rng = np.random.default_rng(171)
    out_scale = np.float32(2.0**-15)
    in_scales = [
        np.float32(2.0**-12),  # TFLM's power-of-two case (multiplier 3, no shift)
        np.float32(2.0**-10),  # a power of two that still takes the general path
        np.float32(2.0**-15),
        np.float32(1e-10),  # the largest left shift
        np.float32(1.0),
        np.float32(2.5),  # no shift
        np.float32(5.0),  # a multiplier above 2^15 (TFLM only DCHECKs against it)
        *[r_scale16(rng, 1e-5, 1e-2) for _ in range(VARIANTS - 7)],
    ]
    models = [_unary_model("LOGISTIC", [128, 256], s, out_scale) for s in in_scales]
    assert check_variants(models, kernel_objects, tmp_path, input_fn=every_int16_value_in_halves()) > 0


def test_int16_logistic_prepare_arithmetic():
    assert checked_log2(np.float32(2.0**-15)) == (True, -15)
    assert checked_log2(np.float32(3.0e-5))[0] is False
    assert logistic_s16_params(np.float32(2.0**-12)) == (3, 0)
    m, shift = logistic_s16_params(np.float32(1e-4))
    assert 16384 <= m < 32768 and shift > 0


@pytest.mark.parametrize("case", ["logistic output scale", "logistic input scale", "mul zero point",
                                  "rsqrt zero point", "int8 operand"])
def test_int16_lowerings_refuse_what_they_cannot_match(case, tmp_path):
    q = np.float32(2.0**-15)
    if case == "logistic output scale":
        _, buf, _ = _unary_model("LOGISTIC", [4], np.float32(1e-3), np.float32(1e-4))
    elif case == "logistic input scale":
        _, buf, _ = _unary_model("LOGISTIC", [4], np.float32(6.0), q)
    elif case == "rsqrt zero point":
        _, buf, _ = _unary_model("RSQRT", [4], np.float32(1e-3), np.float32(1e-3), in_zp=5)
    elif case == "int8 operand":
        m = OpModel()
        x = m.tensor([4], "int16", scale=q, zero_point=0)
        c = m.tensor([4], "int8", scale=np.float32(0.1), zero_point=0, data=np.ones(4, np.int8))
        y = m.tensor([4], "int16", scale=q, zero_point=0)
        m.op("ADD", [x, c], [y], options("AddOptionsT"), "AddOptions")
        buf = m.build([x], [y])
    else:
        _, buf, _ = _binary_model("MUL", [4], [4], [4], (q, q, q), np.ones(4, np.int16), False,
                                  zero_points=(0, 3, 0))
    with pytest.raises(UnsupportedOperator):
        compile_tflite(buf, tmp_path / "m")


def test_int16_rsqrt_matches_tflm_on_every_input(kernel_objects, tmp_path):
    rng = np.random.default_rng(181)
    models = []
    for v in range(VARIANTS):
        s_in = r_scale16(rng, 1e-6, 1e-1)
        # An output scale that keeps 1/sqrt(x) of the typical input inside int16.
        s_out = np.float32(1.0 / math.sqrt(float(s_in) * 32767) * rng.uniform(0.002, 0.05)) if v % 2 else \
            r_scale16(rng, 1e-4, 1e-1)
        models.append(_unary_model("RSQRT", [128, 256], s_in, s_out))
    # The scales of a converted step model's RMSNorm: the output multiplier differs between a
    # float (the pinned TFLM) and a double (the wheel) square root, and 20 of the outputs with it.
    models.append(_unary_model("RSQRT", [128, 256], np.float32(8.870324563758913e-06),
                               np.float32(0.00011451866885181516)))
    assert check_variants(models, kernel_objects, tmp_path, input_fn=every_non_negative_int16_value) > 0


def test_int16_rsqrt_negative_input_fails_like_tflm(kernel_objects, tmp_path):
    _, buf, _ = _unary_model("RSQRT", [1, 8], np.float32(1e-3), np.float32(1e-2))
    report = compile_tflite(buf, tmp_path / "m", symbol_prefix="neg_", copy_kernels=False)
    lib = ctypes.CDLL(str(build_shared_library([report.source], tmp_path / "libneg.so",
                                               kernel_objects=kernel_objects,
                                               include_dirs=[tmp_path / "m"])))
    model = HostModel(lib, report.symbol_prefix, 8, 8, report.input_dtype, report.output_dtype)
    x = np.array([[4, 9, 16, -1, 25, 36, 49, 64]], dtype=np.int16)
    with pytest.raises(Exception):
        run_wheel(buf, x)
    with pytest.raises(TinylocError):
        model.invoke(x)
    ok = np.abs(x)
    np.testing.assert_array_equal(model.invoke(ok), run_wheel(buf, ok))


def test_int16_quantize_matches_tflm(kernel_objects, tmp_path):
    rng = np.random.default_rng(191)
    models = []
    for v in range(VARIANTS):
        shape = r_shape(rng, int(rng.integers(1, 4)), hi=9)
        models.append(_unary_model("QUANTIZE", shape, r_scale16(rng), r_scale16(rng)))
    # int16 <-> int8, zero points anywhere (TFLM's Requantize takes them).
    for v in range(4):
        shape = r_shape(rng, 2, hi=9)
        models.append(_unary_model("QUANTIZE", shape, r_scale16(rng, 1e-5, 1e-3), r_scale16(rng, 1e-3, 1e-1),
                                   out_dtype="int8", out_zp=int(rng.integers(-128, 128))))
    # Equal scales: the multiplier is exactly 2^30 with shift 1.
    models.append(_unary_model("QUANTIZE", [5, 7], np.float32(3e-4), np.float32(3e-4), in_zp=0, out_zp=0))
    assert check_variants(models, kernel_objects, tmp_path, input_fn=int16_inputs) > 0

    int8_models = []
    for v in range(4):
        shape = r_shape(rng, 2, hi=9)
        int8_models.append(_unary_model("QUANTIZE", shape, r_scale16(rng, 1e-3, 1e-1), r_scale16(rng, 1e-6, 1e-3),
                                        in_dtype="int8", in_zp=int(rng.integers(-128, 128)),
                                        out_zp=int(rng.integers(-1000, 1000))))
    assert check_variants(int8_models, kernel_objects, tmp_path / "int8", seed=1) > 0


def test_int16_float_island_matches_tflm(kernel_objects, tmp_path):
    """DEQUANTIZE int16 -> float op -> QUANTIZE float -> int16."""
    rng = np.random.default_rng(201)
    models = []
    for opname in ("TANH", "ABS", "EXP", "NEG"):
        shape = r_shape(rng, 2, hi=12)
        s_in, s_out = r_scale16(rng, 1e-5, 1e-4), r_scale16(rng, 1e-4, 1e-3)
        m = OpModel()
        x = m.tensor(shape, "int16", scale=s_in, zero_point=0)
        f1 = m.tensor(shape, "float32")
        f2 = m.tensor(shape, "float32")
        y = m.tensor(shape, "int16", scale=s_out, zero_point=int(rng.integers(-50, 50)))
        m.op("DEQUANTIZE", [x], [f1])
        m.op(opname, [f1], [f2])
        m.op("QUANTIZE", [f2], [y])
        models.append((f"int16 float {opname}", m.build([x], [y]), shape))
    assert check_variants(models, kernel_objects, tmp_path, input_fn=int16_inputs) > 0


def test_int16_chain_matches_tflm(kernel_objects, tmp_path):
    """A step-model-like chain: gate = LOGISTIC(x * w); y = (1 - gate) * x + gate * x."""
    rng = np.random.default_rng(211)
    q = np.float32(2.0**-15)
    sx = np.float32(4e-4)
    m = OpModel()
    x = m.tensor([1, 1, 1, 16], "int16", scale=sx, zero_point=0)
    w = m.tensor([16], "int16", scale=np.float32(1e-4), zero_point=0,
                 data=rng.integers(-32768, 32768, size=16, dtype=np.int16))
    xw = m.tensor([1, 1, 1, 16], "int16", scale=np.float32(1e-3), zero_point=0)
    gate = m.tensor([1, 1, 1, 16], "int16", scale=q, zero_point=0)
    one = m.tensor([], "int16", scale=q, zero_point=0, data=np.array(32767, np.int16))
    inv = m.tensor([1, 1, 1, 16], "int16", scale=q, zero_point=0)
    kept = m.tensor([1, 1, 1, 16], "int16", scale=np.float32(3e-4), zero_point=0)
    sq = m.tensor([1, 1, 1, 16], "int16", scale=np.float32(2e-4), zero_point=0)
    y = m.tensor([1, 1, 1, 16], "int16", scale=np.float32(5e-4), zero_point=0)
    m.op("MUL", [x, w], [xw], options("MulOptionsT"), "MulOptions")
    m.op("LOGISTIC", [xw], [gate])
    m.op("SUB", [one, gate], [inv], options("SubOptionsT"), "SubOptions")
    m.op("MUL", [inv, x], [kept], options("MulOptionsT"), "MulOptions")
    m.op("MUL", [gate, x], [sq], options("MulOptionsT"), "MulOptions")
    m.op("ADD", [kept, sq], [y], options("AddOptionsT"), "AddOptions")
    models = [("int16 gate chain", m.build([x], [y]), [1, 1, 1, 16])]
    assert check_variants(models, kernel_objects, tmp_path, input_fn=int16_inputs) > 0
