"""Each AOT kernel against TensorFlow Lite Micro (the tflite-micro wheel).

Single-operator .tflite models are written directly with the flatbuffer
schema's object API, so shapes, options and quantization parameters (scales,
zero points, per-channel weight scales) are drawn at random rather than
chosen by a converter. Every model is compiled with ``compile_tflite``, all
variants of one operator are built into one shared library with the host C
compiler (the kernels are compiled once per session), and their outputs must
equal the wheel's bit for bit on random int8 inputs.
"""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest

from helpers import OpModel, options, run_wheel
from tinyloc_tf.deployment.aot import compile_tflite
from tinyloc_tf.deployment.aot.host import HostModel, build_shared_library, host_compiler

# The model builders (helpers.py) and the reference interpreter come from the tflite-micro wheel.
pytest.importorskip("tflite_micro.tensorflow.lite.micro.python.schema_py_generated")
pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

VARIANTS = 10  # random variants per operator
INPUTS = 4  # random input tensors per variant


# ---------------------------------------------------------------------------
# random quantization parameters

def r_scale(rng, lo=1e-3, hi=1.0):
    return np.float32(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def int16_inputs(rng, shape):
    """Random int16 input values over the whole range (the int16x8 kernel tests)."""
    return rng.integers(-32768, 32768, size=shape, dtype=np.int16)


def r_zp(rng):
    return int(rng.integers(-128, 128))


def act(rng, name="ACT"):
    s, z = r_scale(rng), r_zp(rng)
    return s, z


# ---------------------------------------------------------------------------
# running and comparing

def check_variants(models, kernel_objects, tmp_path, seed=0, input_fn=None, tables=True):
    """Compile every (label, model bytes, input shape) into one library and
    compare with the wheel on random inputs. Returns the number of values compared."""
    reports = []
    for i, (_, buf, _) in enumerate(models):
        reports.append(compile_tflite(buf, tmp_path / f"m{i}", symbol_prefix=f"m{i}_",
                                      copy_kernels=False, tables=tables))
    # Every static name of a prefixed model carries the prefix, so all variants
    # compile as one translation unit: one compiler run per test.
    bundle = tmp_path / "bundle.c"
    bundle.write_text("".join(f'#include "{r.source}"\n' for r in reports))
    lib_path = build_shared_library(
        [bundle],
        tmp_path / "libops.so",
        kernel_objects=kernel_objects,
        include_dirs=[tmp_path / f"m{i}" for i in range(len(models))],
        cflags=("-std=c99", "-O2", "-fPIC", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off"),
    )
    lib = ctypes.CDLL(str(lib_path))
    rng = np.random.default_rng(seed)
    compared = 0
    for (label, buf, shape), rep in zip(models, reports):
        model = HostModel(lib, rep.symbol_prefix, int(np.prod(rep.input_shape)),
                          int(np.prod(rep.output_shape)), rep.input_dtype, rep.output_dtype)
        for k in range(INPUTS):
            if input_fn is not None:
                x = input_fn(rng, shape)
            else:
                x = rng.integers(-128, 128, size=shape, dtype=np.int8)
            want = run_wheel(buf, x)
            got = model.invoke(x)
            if not np.array_equal(want, got):
                bad = np.flatnonzero(want != got)
                raise AssertionError(
                    f"{label}, input {k}: {len(bad)} of {want.size} values differ; first at "
                    f"{bad[:5].tolist()}: TFLM {want[bad[:5]].tolist()} vs AOT {got[bad[:5]].tolist()}"
                )
            compared += want.size
    return compared


def r_shape(rng, rank, lo=1, hi=6):
    return [int(rng.integers(lo, hi + 1)) for _ in range(rank)]


def broadcastable(rng, shape):
    """A shape that broadcasts against ``shape`` (some axes 1, maybe fewer axes)."""
    drop = int(rng.integers(0, len(shape)))
    s = [d if rng.random() < 0.5 else 1 for d in shape][drop:]
    return s


# ---------------------------------------------------------------------------
# element-wise binary ops

@pytest.mark.parametrize("opname", ["ADD", "SUB", "MUL", "SQUARED_DIFFERENCE", "MAXIMUM", "MINIMUM"])
def test_binary_ops_match_tflm(opname, kernel_objects, tmp_path):
    rng = np.random.default_rng(hash(opname) % 2**32)
    opts = {
        "ADD": ("AddOptionsT", "AddOptions"),
        "SUB": ("SubOptionsT", "SubOptions"),
        "MUL": ("MulOptionsT", "MulOptions"),
        "SQUARED_DIFFERENCE": ("SquaredDifferenceOptionsT", "SquaredDifferenceOptions"),
        "MAXIMUM": ("MaximumMinimumOptionsT", "MaximumMinimumOptions"),
        "MINIMUM": ("MaximumMinimumOptionsT", "MaximumMinimumOptions"),
    }[opname]
    models = []
    for v in range(VARIANTS):
        # The runner takes one input: the other operand is a constant, which
        # the kernels read like any tensor. Broadcast either way round.
        shape = r_shape(rng, int(rng.integers(1, 5)))
        other = broadcastable(rng, shape) if v % 3 else list(shape)
        swap = v % 2 == 1
        s1, z1 = act(rng)
        if opname in ("MAXIMUM", "MINIMUM"):
            s2, z2, so, zo = s1, z1, s1, z1  # TFLM compares raw values
        else:
            (s2, z2), (so, zo) = act(rng), act(rng)
        m = OpModel()
        a = m.tensor(shape, scale=s1, zero_point=z1)
        b = m.tensor(other, scale=s2, zero_point=z2,
                     data=rng.integers(-128, 128, size=other, dtype=np.int8))
        out = m.tensor(shape, scale=so, zero_point=zo)
        o = options(opts[0])
        if opname in ("ADD", "SUB", "MUL"):
            o.fusedActivationFunction = int(rng.choice([0, 0, 1, 2, 3]))
        m.op(opname, [b, a] if swap else [a, b], [out], o, opts[1])
        models.append((f"{opname} {shape} with {other} swap={swap}", m.build([a], [out]), shape))
    # One variant with both operands the same (non-constant) tensor.
    m = OpModel()
    s1, z1 = act(rng)
    so, zo = (s1, z1) if opname in ("MAXIMUM", "MINIMUM") else act(rng)
    a = m.tensor([3, 7], scale=s1, zero_point=z1)
    out = m.tensor([3, 7], scale=so, zero_point=zo)
    m.op(opname, [a, a], [out], options(opts[0]), opts[1])
    models.append((f"{opname} x,x", m.build([a], [out]), [3, 7]))
    assert check_variants(models, kernel_objects, tmp_path) > 0


# ---------------------------------------------------------------------------
# activations

def _unary_model(rng, opname, out_scale=None, out_zp=None, opts=None, in_zp=None):
    shape = r_shape(rng, int(rng.integers(1, 4)), hi=9)
    s_in = r_scale(rng, 1e-3, 0.5)
    z_in = r_zp(rng) if in_zp is None else in_zp
    so, zo = act(rng)
    so = so if out_scale is None else out_scale
    zo = zo if out_zp is None else out_zp
    m = OpModel()
    x = m.tensor(shape, scale=s_in, zero_point=z_in)
    y = m.tensor(shape, scale=so, zero_point=zo)
    m.op(opname, [x], [y], *(opts or ()))
    return (f"{opname} {shape} in=({s_in}, {z_in}) out=({so}, {zo})", m.build([x], [y]), shape)


def every_int8_value(rng, shape):
    """Inputs that hold all 256 int8 values (when the tensor is big enough)."""
    n = int(np.prod(shape))
    values = np.resize(rng.permutation(np.arange(-128, 128, dtype=np.int16)), n)
    return values.astype(np.int8).reshape(shape)


@pytest.mark.parametrize("tables", [True, False], ids=["tables", "fixed-point"])
@pytest.mark.parametrize("opname", ["LOGISTIC", "TANH", "ELU", "RELU", "QUANTIZE"])
def test_activations_match_tflm(opname, tables, kernel_objects, tmp_path):
    rng = np.random.default_rng(sum(map(ord, opname)))
    models = []
    for _ in range(VARIANTS):
        if opname == "LOGISTIC":
            models.append(_unary_model(rng, opname, out_scale=np.float32(1 / 256), out_zp=-128))
        elif opname == "TANH":
            models.append(_unary_model(rng, opname, out_scale=np.float32(1 / 128), out_zp=0))
        else:
            models.append(_unary_model(rng, opname))
    # Large input scales saturate LOGISTIC / TANH; cover the radius cut-off too.
    if opname in ("LOGISTIC", "TANH"):
        m = OpModel()
        x = m.tensor([4, 64], scale=np.float32(0.25), zero_point=3)
        y = m.tensor([4, 64], scale=np.float32(1 / 256 if opname == "LOGISTIC" else 1 / 128),
                     zero_point=-128 if opname == "LOGISTIC" else 0)
        m.op(opname, [x], [y])
        models.append((f"{opname} wide range", m.build([x], [y]), [4, 64]))
    assert check_variants(models, kernel_objects, tmp_path, input_fn=every_int8_value,
                          tables=tables) > 0


def test_rsqrt_matches_tflm(kernel_objects, tmp_path):
    rng = np.random.default_rng(7)
    models = []
    for _ in range(VARIANTS):
        # RSQRT is only defined for inputs at or above the zero point.
        models.append(_unary_model(rng, "RSQRT", in_zp=int(rng.integers(-128, -60))))

    def inputs(rng_, shape):
        return rng_.integers(-60, 128, size=shape, dtype=np.int8)

    assert check_variants(models, kernel_objects, tmp_path, input_fn=inputs) > 0


def test_l2_normalization_matches_tflm(kernel_objects, tmp_path):
    """Rows divided by their L2 norm (the int8 step Mamba's RMSNorm). The first row of every
    input is all 17, so the model with zero point 17 also meets a row whose sum is 0."""
    rng = np.random.default_rng(13)
    l2 = dict(out_scale=np.float32(1 / 128), out_zp=0, opts=(options("L2NormOptionsT"), "L2NormOptions"))
    models = [_unary_model(rng, "L2_NORMALIZATION", **l2) for _ in range(VARIANTS)]
    models.append(_unary_model(rng, "L2_NORMALIZATION", in_zp=17, **l2))

    def inputs(rng_, shape):
        values = rng_.integers(-128, 128, size=shape, dtype=np.int8)
        values.reshape(-1, shape[-1])[0] = 17
        return values

    assert check_variants(models, kernel_objects, tmp_path, input_fn=inputs) > 0


@pytest.mark.parametrize("tables", [True, False], ids=["tables", "fixed-point"])
def test_softmax_matches_tflm(tables, kernel_objects, tmp_path):
    rng = np.random.default_rng(11)
    models = []
    for v in range(VARIANTS):
        beta = float(rng.choice([1.0, 0.5, 2.0, 1.0 / math.sqrt(8)]))
        models.append(_unary_model(
            rng, "SOFTMAX", out_scale=np.float32(1 / 256), out_zp=-128,
            opts=(options("SoftmaxOptionsT", beta=beta), "SoftmaxOptions"),
        ))
    assert check_variants(models, kernel_objects, tmp_path, tables=tables) > 0


def test_float_island_matches_tflm(kernel_objects, tmp_path):
    """DEQUANTIZE -> float op -> QUANTIZE, as the converter leaves ELU / SQUARE."""
    rng = np.random.default_rng(5)
    models = []
    for opname in ("ELU", "SQUARE", "EXP", "TANH", "LOGISTIC", "ABS", "NEG", "RSQRT"):
        shape = r_shape(rng, 2, hi=12)
        s_in, z_in = r_scale(rng, 1e-3, 0.05), r_zp(rng)
        if opname == "RSQRT":
            z_in = -128
        so, zo = act(rng)
        m = OpModel()
        x = m.tensor(shape, scale=s_in, zero_point=z_in)
        f1 = m.tensor(shape, "float32")
        f2 = m.tensor(shape, "float32")
        y = m.tensor(shape, scale=so, zero_point=zo)
        m.op("DEQUANTIZE", [x], [f1])
        m.op(opname, [f1], [f2])
        m.op("QUANTIZE", [f2], [y])
        models.append((f"float {opname}", m.build([x], [y]), shape))
    # A float binary op with broadcasting and a fused RELU.
    shape = [3, 5]
    m = OpModel()
    x = m.tensor(shape, scale=np.float32(0.02), zero_point=-7)
    f1 = m.tensor(shape, "float32")
    c = m.tensor([5], "float32", data=rng.normal(size=5).astype(np.float32))
    f2 = m.tensor(shape, "float32")
    y = m.tensor(shape, scale=np.float32(0.03), zero_point=4)
    m.op("DEQUANTIZE", [x], [f1])
    m.op("MUL", [f1, c], [f2], options("MulOptionsT", fusedActivationFunction=1), "MulOptions")
    m.op("QUANTIZE", [f2], [y])
    models.append(("float MUL broadcast relu", m.build([x], [y]), shape))
    assert check_variants(models, kernel_objects, tmp_path) > 0


# ---------------------------------------------------------------------------
# linear algebra (per-channel weights, random biases and activations)

def _weights(rng, shape, channels_axis, per_channel=True):
    w = rng.integers(-127, 128, size=shape, dtype=np.int8)
    n = shape[channels_axis] if per_channel else 1
    scales = np.array([r_scale(rng, 1e-3, 0.1) for _ in range(n)], dtype=np.float32)
    return w, scales


def test_fully_connected_matches_tflm(kernel_objects, tmp_path):
    rng = np.random.default_rng(21)
    models = []
    for v in range(VARIANTS):
        batch_shape = r_shape(rng, int(rng.integers(1, 3)), hi=4)
        depth, units = int(rng.integers(1, 40)), int(rng.integers(1, 20))
        per_channel = v % 2 == 0
        s_in, z_in = act(rng)
        so, zo = act(rng)
        w, ws = _weights(rng, [units, depth], 0, per_channel)
        m = OpModel()
        x = m.tensor(batch_shape + [depth], scale=s_in, zero_point=z_in)
        wt = m.tensor([units, depth], scale=ws, zero_point=np.zeros(len(ws), np.int64), data=w, qdim=0)
        ins = [x, wt]
        if v % 3 != 2:
            bias_scale = (np.float32(s_in) * ws).astype(np.float32)
            bias = m.tensor([units], "int32", scale=bias_scale,
                            data=rng.integers(-5000, 5000, size=units).astype(np.int32))
            ins.append(bias)
        else:
            ins.append(-1)
        y = m.tensor(batch_shape + [units], scale=so, zero_point=zo)
        o = options("FullyConnectedOptionsT", keepNumDims=True,
                    fusedActivationFunction=int(rng.choice([0, 1])))
        m.op("FULLY_CONNECTED", ins, [y], o, "FullyConnectedOptions")
        models.append((f"FC {batch_shape}x{depth}->{units} per_channel={per_channel}",
                       m.build([x], [y]), batch_shape + [depth]))
    assert check_variants(models, kernel_objects, tmp_path) > 0


def _conv_options(rng, depthwise=False, multiplier=1):
    cls, kind = ("DepthwiseConv2DOptionsT", "DepthwiseConv2DOptions") if depthwise else (
        "Conv2DOptionsT", "Conv2DOptions")
    o = options(cls)
    o.padding = int(rng.integers(0, 2))
    o.strideH, o.strideW = int(rng.integers(1, 3)), int(rng.integers(1, 4))
    o.dilationHFactor, o.dilationWFactor = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    o.fusedActivationFunction = int(rng.choice([0, 0, 1, 3]))
    if depthwise:
        o.depthMultiplier = multiplier
    return o, kind


def _out_size(n, f, s, d, padding):
    eff = (f - 1) * d + 1
    return (n + s - 1) // s if padding == 0 else (n + s - eff) // s


def test_conv_2d_matches_tflm(kernel_objects, tmp_path):
    rng = np.random.default_rng(31)
    models = []
    for v in range(VARIANTS):
        n, h, w_, c = 1, int(rng.integers(1, 7)), int(rng.integers(3, 24)), int(rng.integers(1, 9))
        groups = 2 if (v == 0 and c % 2 == 0) else 1
        oc = int(rng.integers(1, 9)) * groups
        fh, fw = int(rng.integers(1, min(h, 3) + 1)), int(rng.integers(1, 5))
        o, kind = _conv_options(rng)
        oh = _out_size(h, fh, o.strideH, o.dilationHFactor, o.padding)
        ow = _out_size(w_, fw, o.strideW, o.dilationWFactor, o.padding)
        if oh <= 0 or ow <= 0:
            o.padding, oh, ow = 0, -(-h // o.strideH), -(-w_ // o.strideW)
        s_in, z_in = act(rng)
        so, zo = act(rng)
        wts, ws = _weights(rng, [oc, fh, fw, c // groups], 0, per_channel=v % 4 != 1)
        m = OpModel()
        x = m.tensor([n, h, w_, c], scale=s_in, zero_point=z_in)
        wt = m.tensor(wts.shape, scale=ws, zero_point=np.zeros(len(ws), np.int64), data=wts)
        bias = m.tensor([oc], "int32", scale=(np.float32(s_in) * np.resize(ws, oc)).astype(np.float32),
                        data=rng.integers(-3000, 3000, size=oc).astype(np.int32))
        y = m.tensor([n, oh, ow, oc], scale=so, zero_point=zo)
        m.op("CONV_2D", [x, wt, bias], [y], o, kind)
        models.append((f"CONV_2D in {[n, h, w_, c]} filter {list(wts.shape)} pad={o.padding} "
                       f"stride={o.strideH},{o.strideW} dil={o.dilationHFactor},{o.dilationWFactor}",
                       m.build([x], [y]), [n, h, w_, c]))
    assert check_variants(models, kernel_objects, tmp_path) > 0


def test_depthwise_conv_2d_matches_tflm(kernel_objects, tmp_path):
    rng = np.random.default_rng(41)
    models = []
    for v in range(VARIANTS):
        h, w_, c = int(rng.integers(1, 5)), int(rng.integers(4, 24)), int(rng.integers(1, 9))
        mult = int(rng.choice([1, 1, 2]))
        oc = c * mult
        fh, fw = int(rng.integers(1, min(h, 3) + 1)), int(rng.integers(1, 5))
        o, kind = _conv_options(rng, depthwise=True, multiplier=mult)
        oh = _out_size(h, fh, o.strideH, o.dilationHFactor, o.padding)
        ow = _out_size(w_, fw, o.strideW, o.dilationWFactor, o.padding)
        if oh <= 0 or ow <= 0:
            o.padding, oh, ow = 0, -(-h // o.strideH), -(-w_ // o.strideW)
        s_in, z_in = act(rng)
        so, zo = act(rng)
        wts, ws = _weights(rng, [1, fh, fw, oc], 3)
        m = OpModel()
        x = m.tensor([1, h, w_, c], scale=s_in, zero_point=z_in)
        wt = m.tensor(wts.shape, scale=ws, zero_point=np.zeros(len(ws), np.int64), data=wts, qdim=3)
        ins = [x, wt]
        if v % 3:
            ins.append(m.tensor([oc], "int32", scale=(np.float32(s_in) * ws).astype(np.float32),
                                data=rng.integers(-3000, 3000, size=oc).astype(np.int32)))
        y = m.tensor([1, oh, ow, oc], scale=so, zero_point=zo)
        m.op("DEPTHWISE_CONV_2D", ins, [y], o, kind)
        models.append((f"DEPTHWISE in {[1, h, w_, c]} filter {list(wts.shape)} pad={o.padding}",
                       m.build([x], [y]), [1, h, w_, c]))
    assert check_variants(models, kernel_objects, tmp_path) > 0


def random_matmul_shapes(rng, variant: int):
    """``(lhs, rhs, out shapes, adj_x, adj_y, depth)`` of a random BATCH_MATMUL: up to two batch
    axes, the rhs's broadcast or dropped, adj_x / adj_y from the variant number's two low bits."""
    rows, depth, cols = (int(rng.integers(1, 12)) for _ in range(3))
    batch = r_shape(rng, int(rng.integers(0, 3)), hi=3)
    rhs_batch = [b if rng.random() < 0.6 else 1 for b in batch][int(rng.integers(0, len(batch) + 1)):]
    adj_x, adj_y = bool(variant & 1), bool(variant & 2)
    lhs_shape = batch + ([depth, rows] if adj_x else [rows, depth])
    rhs_shape = rhs_batch + ([cols, depth] if adj_y else [depth, cols])
    return lhs_shape, rhs_shape, batch + [rows, cols], adj_x, adj_y, depth


def test_batch_matmul_matches_tflm(kernel_objects, tmp_path):
    rng = np.random.default_rng(51)
    models = []
    for v in range(VARIANTS):
        lhs_shape, rhs_shape, out_shape, adj_x, adj_y, _ = random_matmul_shapes(rng, v)
        s1, z1 = act(rng)
        s2, z2 = act(rng)
        so, zo = act(rng)
        m = OpModel()
        a = m.tensor(lhs_shape, scale=s1, zero_point=z1)
        b = m.tensor(rhs_shape, scale=s2, zero_point=z2,
                     data=rng.integers(-128, 128, size=rhs_shape, dtype=np.int8))
        y = m.tensor(out_shape, scale=so, zero_point=zo)
        m.op("BATCH_MATMUL", [a, b], [y], options("BatchMatMulOptionsT", adjX=adj_x, adjY=adj_y),
             "BatchMatMulOptions")
        models.append((f"BATCH_MATMUL {lhs_shape} x {rhs_shape} adj={adj_x},{adj_y}",
                       m.build([a], [y]), lhs_shape))
    # Both operands from the input (attention's Q K^T), as MDCSA does.
    m = OpModel()
    s1, z1 = act(rng)
    so, zo = act(rng)
    a = m.tensor([1, 6, 5], scale=s1, zero_point=z1)
    y = m.tensor([1, 6, 6], scale=so, zero_point=zo)
    m.op("BATCH_MATMUL", [a, a], [y], options("BatchMatMulOptionsT", adjX=False, adjY=True),
         "BatchMatMulOptions")
    models.append(("BATCH_MATMUL x x^T", m.build([a], [y]), [1, 6, 5]))
    assert check_variants(models, kernel_objects, tmp_path) > 0


# ---------------------------------------------------------------------------
# reductions

@pytest.mark.parametrize("opname", ["MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN"])
def test_reductions_match_tflm(opname, kernel_objects, tmp_path):
    rng = np.random.default_rng(sum(map(ord, opname)) + 3)
    models = []
    for v in range(VARIANTS):
        rank = int(rng.integers(1, 5))
        shape = r_shape(rng, rank, hi=7)
        k = int(rng.integers(1, rank + 1))
        axes = sorted(rng.choice(rank, size=k, replace=False).tolist())
        axes = [a - rank if rng.random() < 0.3 else a for a in axes]  # negative axes too
        keep = bool(v % 2)
        norm = [a % rank for a in axes]
        out_shape = [1 if i in norm else d for i, d in enumerate(shape)] if keep else [
            d for i, d in enumerate(shape) if i not in norm]
        s_in, z_in = act(rng)
        so, zo = (s_in, z_in) if opname.startswith("REDUCE") else act(rng)
        if opname == "SUM":
            so = np.float32(s_in * int(np.prod([shape[a] for a in norm])) * rng.uniform(0.2, 1.0))
        m = OpModel()
        x = m.tensor(shape, scale=s_in, zero_point=z_in)
        ax = m.tensor([len(axes)], "int32", data=np.array(axes, dtype=np.int32))
        y = m.tensor(out_shape, scale=so, zero_point=zo)
        m.op(opname, [x, ax], [y], options("ReducerOptionsT", keepDims=keep), "ReducerOptions")
        models.append((f"{opname} {shape} axes={axes} keep={keep}", m.build([x], [y]), shape))
    assert check_variants(models, kernel_objects, tmp_path) > 0


# ---------------------------------------------------------------------------
# data movement (the output of each is a plain copy of input bytes)

def _transpose(rng, v, shape, s, z):
    perm = rng.permutation(len(shape)).astype(np.int32)
    m = OpModel()
    x = m.tensor(shape, scale=s, zero_point=z)
    p = m.tensor([len(perm)], "int32", data=perm)
    y = m.tensor([shape[i] for i in perm], scale=s, zero_point=z)
    m.op("TRANSPOSE", [x, p], [y], options("TransposeOptionsT"), "TransposeOptions")
    return f"TRANSPOSE {shape} {perm.tolist()}", m.build([x], [y]), shape


def _reshape(rng, v, shape, s, z):
    # the output is a view (copied out at the end)
    m = OpModel()
    x = m.tensor(shape, scale=s, zero_point=z)
    ns = m.tensor([2], "int32", data=np.array([int(np.prod(shape[:-1])), shape[-1]], np.int32))
    y = m.tensor([int(np.prod(shape[:-1])), shape[-1]], scale=s, zero_point=z)
    m.op("RESHAPE", [x, ns], [y])
    return f"RESHAPE {shape}", m.build([x], [y]), shape


def _concatenation(rng, v, shape, s, z):
    # the input with a constant along a random axis, the constant first in odd variants and
    # the axis counted from the end in variant 3
    axis = int(rng.integers(0, len(shape)))
    other = list(shape)
    other[axis] = int(rng.integers(1, 4))
    out = list(shape)
    out[axis] += other[axis]
    m = OpModel()
    x = m.tensor(shape, scale=s, zero_point=z)
    c = m.tensor(other, scale=s, zero_point=z, data=rng.integers(-128, 128, size=other, dtype=np.int8))
    y = m.tensor(out, scale=s, zero_point=z)
    m.op("CONCATENATION", [c, x] if v % 2 else [x, c], [y],
         options("ConcatenationOptionsT", axis=axis - len(shape) if v == 3 else axis),
         "ConcatenationOptions")
    return f"CONCATENATION {shape}+{other} axis={axis}", m.build([x], [y]), shape


def _pack(rng, v, shape, s, z):
    # the input with a constant
    axis = int(rng.integers(0, len(shape) + 1))
    out = list(shape)
    out.insert(axis, 2)
    m = OpModel()
    x = m.tensor(shape, scale=s, zero_point=z)
    c = m.tensor(shape, scale=s, zero_point=z, data=rng.integers(-128, 128, size=shape, dtype=np.int8))
    y = m.tensor(out, scale=s, zero_point=z)
    m.op("PACK", [x, c], [y], options("PackOptionsT", valuesCount=2, axis=axis), "PackOptions")
    return f"PACK {shape} axis={axis}", m.build([x], [y]), shape


def _unpack(rng, v, shape, s, z):
    # the model's output is one random slice
    axis = int(rng.integers(0, len(shape)))
    n = shape[axis]
    piece = [d for i, d in enumerate(shape) if i != axis]
    m = OpModel()
    x = m.tensor(shape, scale=s, zero_point=z)
    outs = [m.tensor(piece, scale=s, zero_point=z) for _ in range(n)]
    m.op("UNPACK", [x], outs, options("UnpackOptionsT", num=n, axis=axis), "UnpackOptions")
    pick = outs[int(rng.integers(0, n))]
    return f"UNPACK {shape} axis={axis}", m.build([x], [pick]), shape


def _split(rng, v, shape, s, z):
    # into two halves; the model's output is the first half in even variants, the second in odd
    axis = int(rng.integers(0, len(shape)))
    big = list(shape)
    big[axis] = 2 * shape[axis]
    m = OpModel()
    ax = m.tensor([], "int32", data=np.array(axis, np.int32))
    x = m.tensor(big, scale=s, zero_point=z)
    outs = [m.tensor(shape, scale=s, zero_point=z) for _ in range(2)]
    m.op("SPLIT", [ax, x], outs, options("SplitOptionsT", numSplits=2), "SplitOptions")
    return f"SPLIT {big} axis={axis}", m.build([x], [outs[v % 2]]), big


def _split_v(rng, v, shape, s, z):
    # sizes 1 and the rest; the model's output is the last piece
    axis = int(rng.integers(0, len(shape)))
    big = list(shape)
    big[axis] = 2 * shape[axis]
    sizes = [1, big[axis] - 1] if big[axis] > 1 else [1]
    m = OpModel()
    x = m.tensor(big, scale=s, zero_point=z)
    sz = m.tensor([len(sizes)], "int32", data=np.array(sizes, np.int32))
    ax = m.tensor([], "int32", data=np.array(axis, np.int32))
    outs = []
    for k in sizes:
        o_shape = list(big)
        o_shape[axis] = k
        outs.append(m.tensor(o_shape, scale=s, zero_point=z))
    m.op("SPLIT_V", [x, sz, ax], outs, options("SplitVOptionsT", numSplits=len(sizes)), "SplitVOptions")
    return f"SPLIT_V {big} {sizes} axis={axis}", m.build([x], [outs[-1]]), big


def _pad(rng, v, shape, s, z):
    # PAD in even variants, PADV2 with a constant pad value in odd ones
    pads = rng.integers(0, 3, size=(len(shape), 2)).astype(np.int32)
    out = [d + int(a + b) for d, (a, b) in zip(shape, pads)]
    m = OpModel()
    x = m.tensor(shape, scale=s, zero_point=z)
    pt = m.tensor([len(shape), 2], "int32", data=pads)
    ins = [x, pt]
    if v % 2:
        ins.append(m.tensor([], scale=s, zero_point=z, data=np.array(int(rng.integers(-128, 128)), np.int8)))
    y = m.tensor(out, scale=s, zero_point=z)
    opname = "PADV2" if v % 2 else "PAD"
    m.op(opname, ins, [y])
    return f"{opname} {shape} {pads.tolist()}", m.build([x], [y]), shape


LAYOUT_OPS = {
    "TRANSPOSE": _transpose,
    "RESHAPE": _reshape,
    "CONCATENATION": _concatenation,
    "PACK": _pack,
    "UNPACK": _unpack,
    "SPLIT": _split,
    "SPLIT_V": _split_v,
    "PAD": _pad,  # and PADV2
}


@pytest.mark.parametrize("seed, build", [pytest.param(61 + i, build, id=name)
                                         for i, (name, build) in enumerate(LAYOUT_OPS.items())])
def test_layout_ops_match_tflm(seed, build, kernel_objects, tmp_path):
    rng = np.random.default_rng(seed)
    models = []
    for v in range(4):  # the variant number picks the options each builder alternates
        s, z = act(rng)
        shape = r_shape(rng, int(rng.integers(2, 6)), hi=5)
        models.append(build(rng, v, shape, s, z))
    assert check_variants(models, kernel_objects, tmp_path) > 0


def test_slices_match_tflm(kernel_objects, tmp_path):
    rng = np.random.default_rng(71)
    models = []
    for v in range(2 * VARIANTS):
        rank = int(rng.integers(1, 5))
        shape = r_shape(rng, rank, hi=7)
        begin, end, strides = [], [], []
        for d in shape:
            st = int(rng.choice([1, 1, 2, -1]))
            b = int(rng.integers(-d, d))
            e = int(rng.integers(-d, d + 1))
            begin.append(b)
            end.append(e)
            strides.append(st)
        bm, em = int(rng.integers(0, 2**rank)), int(rng.integers(0, 2**rank))
        sm = int(rng.integers(0, 2**rank)) if v % 3 == 0 else 0
        # A shrunk axis takes one element; converters emit it with stride 1.
        strides = [1 if sm & (1 << i) else st for i, st in enumerate(strides)]
        # Output shape by the same rules TFLM uses.
        from tinyloc_tf.deployment.aot.lowering import _strided_slice_axis

        out = []
        for i, d in enumerate(shape):
            a, b = _strided_slice_axis(d, begin[i], end[i], strides[i], bm & (1 << i), em & (1 << i),
                                       sm & (1 << i), False)
            if sm & (1 << i):
                continue
            out.append(len(range(a, b, strides[i])))
        if int(np.prod(out)) == 0 or any(
            (sm & (1 << i)) and not (-d <= begin[i] < d) for i, d in enumerate(shape)):
            continue
        s, z = act(rng)
        m = OpModel()
        x = m.tensor(shape, scale=s, zero_point=z)
        ts = [m.tensor([rank], "int32", data=np.array(a, np.int32)) for a in (begin, end, strides)]
        y = m.tensor(out, scale=s, zero_point=z)
        m.op("STRIDED_SLICE", [x, *ts], [y],
             options("StridedSliceOptionsT", beginMask=bm, endMask=em, shrinkAxisMask=sm),
             "StridedSliceOptions")
        models.append((f"STRIDED_SLICE {shape} {begin}:{end}:{strides} masks={bm},{em},{sm}",
                       m.build([x], [y]), shape))
    # SLICE with a -1 size
    s, z = act(rng)
    m = OpModel()
    x = m.tensor([4, 6, 3], scale=s, zero_point=z)
    b = m.tensor([3], "int32", data=np.array([1, 2, 0], np.int32))
    n = m.tensor([3], "int32", data=np.array([2, -1, 2], np.int32))
    y = m.tensor([2, 4, 2], scale=s, zero_point=z)
    m.op("SLICE", [x, b, n], [y], options("SliceOptionsT"), "SliceOptions")
    models.append(("SLICE", m.build([x], [y]), [4, 6, 3]))
    assert len(models) > VARIANTS // 2
    assert check_variants(models, kernel_objects, tmp_path) > 0


# ---------------------------------------------------------------------------
# the Python fixed-point port (used for compile-time tables) against the C one

_SHIM = r"""
#include "tl_fixedpoint.h"
#define MAP2(name, expr) void w_##name(const int32_t* a, const int32_t* b, int32_t* o, int n, int k) \
  { for (int i = 0; i < n; ++i) o[i] = (expr); (void)b; (void)k; }
MAP2(srdhm, tl_srdhm(a[i], b[i]))
MAP2(rdbypot, tl_rounding_divide_by_pot(a[i], k))
MAP2(satpot, tl_saturating_rounding_mul_by_pot(a[i], k))
MAP2(mbqm, tl_mbqm(a[i], b[i], k))
MAP2(exp, tl_exp_on_negative_values(a[i], k))
MAP2(recip, tl_one_over_one_plus_x_for_x_in_0_1(a[i]))
MAP2(tanhq, tl_one_minus_x_over_one_plus_x_for_x_in_0_1(a[i]))
MAP2(logistic, tl_logistic_fixed(a[i], k))
MAP2(tanh, tl_tanh_fixed(a[i], k))
"""


def test_python_fixedpoint_matches_c(tmp_path):
    from tinyloc_tf.deployment.aot import KERNEL_DIR, fixedpoint as fp

    try:
        host_compiler()
    except Exception as exc:
        pytest.skip(str(exc))
    src = tmp_path / "shim.c"
    src.write_text(_SHIM)
    lib = ctypes.CDLL(str(build_shared_library([src], tmp_path / "libshim.so", kernel_objects=[],
                                               include_dirs=[KERNEL_DIR])))
    rng = np.random.default_rng(3)
    n = 20000

    def c_call(name, a, b=None, k=0):
        a = np.ascontiguousarray(a, dtype=np.int32)
        b = np.ascontiguousarray(a if b is None else b, dtype=np.int32)
        out = np.zeros(n, dtype=np.int32)
        ptr = ctypes.c_void_p
        getattr(lib, f"w_{name}")(ptr(a.ctypes.data), ptr(b.ctypes.data), ptr(out.ctypes.data), n, k)
        return out.astype(np.int64)

    full = rng.integers(-(2**31), 2**31, size=n, dtype=np.int64)
    # Values near rounding ties as well as uniform ones.
    ties = (rng.integers(-(2**20), 2**20, size=n) << 11) + rng.choice([-1, 0, 1, 1 << 10], size=n)
    mult = rng.integers(2**30, 2**31, size=n, dtype=np.int64)
    for a in (full, np.clip(ties, -(2**31), 2**31 - 1)):
        np.testing.assert_array_equal(fp.srdhm(a, mult), c_call("srdhm", a, mult))
        np.testing.assert_array_equal(fp.srdhm(a, a), c_call("srdhm", a, a))
        for k in (0, 1, 11, 23, 31):
            np.testing.assert_array_equal(fp.rounding_divide_by_pot(a, k), c_call("rdbypot", a, k=k))
        for k in (-5, 1, 4, 6):
            np.testing.assert_array_equal(fp.saturating_rounding_mul_by_pot(a, k),
                                          c_call("satpot", a, k=k))
        small = a >> 12
        for k in (-12, -1, 0, 3):
            want = c_call("mbqm", small, np.full(n, 1518500250), k=k)
            np.testing.assert_array_equal(fp.mbqm(small, 1518500250, k), want)
        np.testing.assert_array_equal(fp.logistic(a, 4), c_call("logistic", a, k=4))
        np.testing.assert_array_equal(fp.tanh(a, 4), c_call("tanh", a, k=4))
        neg = -np.abs(a)
        neg[neg < -(2**31) + 1] = -(2**31) + 1
        for ib in (4, 5, 6):
            np.testing.assert_array_equal(fp.exp_on_negative_values(neg, ib), c_call("exp", neg, k=ib))
        pos = np.abs(a) % (2**31)
        np.testing.assert_array_equal(fp.one_over_one_plus_x_for_x_in_0_1(pos), c_call("recip", pos))
        np.testing.assert_array_equal(fp.one_minus_x_over_one_plus_x_for_x_in_0_1(pos),
                                      c_call("tanhq", pos))
