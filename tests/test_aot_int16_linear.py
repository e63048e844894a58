"""int16x8 linear AOT kernels against TensorFlow Lite Micro (the tflite-micro wheel).

FULLY_CONNECTED, DEPTHWISE_CONV_2D, BATCH_MATMUL, MEAN and SUM with int16 activations,
int8 weights and int64 (or int32) biases, as TFLite's 16x8 quantizer writes them. Like
test_aot_kernels.py, single-operator models are drawn at random (shapes, options, scales,
per-channel weight scales) and every output must equal the wheel's bit for bit on random
int16 inputs over the whole int16 range. Each test also carries the exact shapes the Mamba
streaming step model uses.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import OpModel, options
from test_aot_kernels import (
    VARIANTS,
    _conv_options,
    _out_size,
    check_variants,
    int16_inputs,
    r_scale,
    r_shape,
    random_matmul_shapes,
)

pytest.importorskip("tflite_micro.tensorflow.lite.micro.python.schema_py_generated")
pytest.importorskip("tflite_micro.python.tflite_micro.runtime")

INT16_STD = 32768 / math.sqrt(3)  # standard deviation of a uniform int16
INT8_STD = 128 / math.sqrt(3)


def output_scale(rng, real_std):
    """An output scale that puts a result of standard deviation ``real_std`` (real units)
    at about +-1000..+-10000 in int16, so requantization is exercised more than clamping."""
    return np.float32(real_std / (3000.0 * rng.uniform(0.3, 3.0)))


def weights(rng, shape, channels_axis, per_channel=True):
    w = rng.integers(-127, 128, size=shape, dtype=np.int8)
    n = shape[channels_axis] if per_channel else 1
    return w, np.array([r_scale(rng, 1e-3, 0.1) for _ in range(n)], dtype=np.float32)


# ---------------------------------------------------------------------------
# FULLY_CONNECTED

def _fc_model(rng, batch_shape, depth, units, per_channel=True, bias="int64", act_fn=0,
              bias_magnitude=None, zero_points=(0, 0), quantized_bias_type=0):
    s_in = r_scale(rng, 1e-4, 1e-2)
    w, ws = weights(rng, [units, depth], 0, per_channel)
    product_scale = float(s_in) * float(np.max(ws))
    std = product_scale * INT16_STD * INT8_STD * math.sqrt(depth)
    magnitude = bias_magnitude or int(std / product_scale)
    # The bias adds its own spread (uniform in +-magnitude) to the outputs.
    so = output_scale(rng, math.hypot(std, product_scale * magnitude / math.sqrt(3) if bias else 0.0))
    m = OpModel()
    x = m.tensor(batch_shape + [depth], "int16", scale=s_in, zero_point=zero_points[0])
    wt = m.tensor([units, depth], scale=ws, zero_point=np.zeros(len(ws), np.int64), data=w, qdim=0)
    ins = [x, wt]
    if bias is None:
        ins.append(-1)
    else:
        values = rng.integers(-magnitude, magnitude + 1, size=units).astype(np.int64)
        bias_scale = (np.float32(s_in) * np.resize(ws, units)).astype(np.float32)
        ins.append(m.tensor([units], bias, scale=bias_scale, data=values.astype(bias)))
    y = m.tensor(batch_shape + [units], "int16", scale=so, zero_point=zero_points[1])
    o = options("FullyConnectedOptionsT", keepNumDims=True, fusedActivationFunction=act_fn,
                quantizedBiasType=quantized_bias_type)
    m.op("FULLY_CONNECTED", ins, [y], o, "FullyConnectedOptions")
    label = (f"FC {batch_shape}x{depth}->{units} per_channel={per_channel} bias={bias} act={act_fn} "
             f"zp={zero_points}")
    return label, m.build([x], [y]), batch_shape + [depth]


def test_fully_connected_int16_matches_tflm(kernel_objects, tmp_path):
    rng = np.random.default_rng(121)
    models = []
    for v in range(VARIANTS):
        batch_shape = r_shape(rng, int(rng.integers(1, 3)), hi=4)
        depth, units = int(rng.integers(1, 40)), int(rng.integers(1, 20))
        bias = [None, "int64", "int64", "int32"][v % 4]
        models.append(_fc_model(rng, batch_shape, depth, units, per_channel=v % 2 == 0, bias=bias,
                                act_fn=int(rng.choice([0, 0, 1, 2, 3]))))
    # The step model's projections: [1,1,1,16] x [33,16] and [1,1,1,1] x [16,1], int64 bias.
    models.append(_fc_model(rng, [1, 1, 1], 16, 33))
    models.append(_fc_model(rng, [1, 1, 1], 1, 16))
    models.append(_fc_model(rng, [1, 1, 1], 16, 33, per_channel=False))
    # Biases far beyond int32: the accumulator and the requantization must be int64.
    models.append(_fc_model(rng, [2], 24, 5, bias_magnitude=2**40))
    # No bias but INT32 asked for: TFLM's int32 accumulator.
    models.append(_fc_model(rng, [3], 20, 7, bias=None, quantized_bias_type=2))
    # Asymmetric int16 activations: TFLM's kernel still applies the zero points.
    models.append(_fc_model(rng, [2], 9, 6, zero_points=(-1234, 321)))
    models.append(_fc_model(rng, [2], 9, 6, per_channel=False, bias="int32", zero_points=(77, -5)))
    assert check_variants(models, kernel_objects, tmp_path, input_fn=int16_inputs) > 0


# ---------------------------------------------------------------------------
# DEPTHWISE_CONV_2D

def _dw_model(rng, in_shape, fh, fw, mult, o, kind, per_channel=True, bias=True, zero_points=(0, 0)):
    _, h, w_, c = in_shape
    oc = c * mult
    oh = _out_size(h, fh, o.strideH, o.dilationHFactor, o.padding)
    ow = _out_size(w_, fw, o.strideW, o.dilationWFactor, o.padding)
    s_in = r_scale(rng, 1e-4, 1e-2)
    wts, ws = weights(rng, [1, fh, fw, oc], 3, per_channel)
    std = float(s_in) * float(np.max(ws)) * INT16_STD * INT8_STD * math.sqrt(fh * fw)
    so = output_scale(rng, std)
    m = OpModel()
    x = m.tensor(in_shape, "int16", scale=s_in, zero_point=zero_points[0])
    wt = m.tensor(wts.shape, scale=ws, zero_point=np.zeros(len(ws), np.int64), data=wts, qdim=3)
    ins = [x, wt]
    if bias:
        magnitude = int(std / (float(s_in) * float(np.max(ws))))
        ins.append(m.tensor([oc], "int64", scale=(np.float32(s_in) * np.resize(ws, oc)).astype(np.float32),
                            data=rng.integers(-magnitude, magnitude + 1, size=oc).astype(np.int64)))
    y = m.tensor([1, oh, ow, oc], "int16", scale=so, zero_point=zero_points[1])
    m.op("DEPTHWISE_CONV_2D", ins, [y], o, kind)
    label = (f"DEPTHWISE in {in_shape} filter {list(wts.shape)} pad={o.padding} "
             f"stride={o.strideH},{o.strideW} dil={o.dilationHFactor},{o.dilationWFactor} zp={zero_points}")
    return label, m.build([x], [y]), list(in_shape)


def test_depthwise_conv_2d_int16_matches_tflm(kernel_objects, tmp_path):
    rng = np.random.default_rng(141)
    models = []
    for v in range(VARIANTS):
        h, w_, c = int(rng.integers(1, 5)), int(rng.integers(4, 24)), int(rng.integers(1, 9))
        mult = int(rng.choice([1, 1, 2]))
        fh, fw = int(rng.integers(1, min(h, 3) + 1)), int(rng.integers(1, 5))
        o, kind = _conv_options(rng, depthwise=True, multiplier=mult)
        oh = _out_size(h, fh, o.strideH, o.dilationHFactor, o.padding)
        ow = _out_size(w_, fw, o.strideW, o.dilationWFactor, o.padding)
        if oh <= 0 or ow <= 0:
            o.padding = 0
        models.append(_dw_model(rng, [1, h, w_, c], fh, fw, mult, o, kind,
                                per_channel=v % 4 != 1, bias=v % 3 != 0))
    # The step model's causal convolution: [1,1,4,16] * [1,1,4,16] -> [1,1,1,16], VALID.
    step = options("DepthwiseConv2DOptionsT", padding=1, strideH=1, strideW=1, depthMultiplier=1)
    models.append(_dw_model(rng, [1, 1, 4, 16], 1, 4, 1, step, "DepthwiseConv2DOptions"))
    # TFLM's int16 kernel ignores zero points; so must ours.
    models.append(_dw_model(rng, [1, 1, 4, 16], 1, 4, 1, step, "DepthwiseConv2DOptions",
                            zero_points=(100, -40)))
    assert check_variants(models, kernel_objects, tmp_path, input_fn=int16_inputs) > 0


# ---------------------------------------------------------------------------
# BATCH_MATMUL

def _bmm_model(rng, lhs_shape, rhs_shape, out_shape, adj_x, adj_y, depth, same_operand=False):
    s1, s2 = r_scale(rng, 1e-4, 1e-2), r_scale(rng, 1e-4, 1e-2)
    if same_operand:
        s2 = s1
    so = output_scale(rng, float(s1) * float(s2) * INT16_STD**2 * math.sqrt(depth))
    m = OpModel()
    a = m.tensor(lhs_shape, "int16", scale=s1, zero_point=0)
    b = a if same_operand else m.tensor(rhs_shape, "int16", scale=s2, zero_point=0,
                                        data=rng.integers(-32768, 32768, size=rhs_shape, dtype=np.int16))
    y = m.tensor(out_shape, "int16", scale=so, zero_point=0)
    m.op("BATCH_MATMUL", [a, b], [y], options("BatchMatMulOptionsT", adjX=adj_x, adjY=adj_y),
         "BatchMatMulOptions")
    label = f"BATCH_MATMUL {lhs_shape} x {'itself' if same_operand else rhs_shape} adj={adj_x},{adj_y}"
    return label, m.build([a], [y]), list(lhs_shape)


def test_batch_matmul_int16_matches_tflm(kernel_objects, tmp_path):
    rng = np.random.default_rng(151)
    models = []
    for v in range(VARIANTS):
        lhs_shape, rhs_shape, out_shape, adj_x, adj_y, depth = random_matmul_shapes(rng, v)
        models.append(_bmm_model(rng, lhs_shape, rhs_shape, out_shape, adj_x, adj_y, depth))
    # The step model: x^T x ([1,1,1,16]^T x [1,1,1,16] -> [1,1,16,16]) and
    # [1,1,1,16] x [1,1,16,16]^T -> [1,1,1,16], both with activations on each side.
    models.append(_bmm_model(rng, [1, 1, 1, 16], None, [1, 1, 16, 16], True, False, 1, same_operand=True))
    models.append(_bmm_model(rng, [1, 1, 1, 16], [1, 1, 16, 16], [1, 1, 1, 16], False, True, 16))
    models.append(_bmm_model(rng, [1, 6, 5], None, [1, 6, 6], False, True, 5, same_operand=True))
    assert check_variants(models, kernel_objects, tmp_path, input_fn=int16_inputs) > 0


# ---------------------------------------------------------------------------
# MEAN / SUM

def _reduce_model(rng, opname, shape, axes, keep, zero_points=(0, 0)):
    rank = len(shape)
    norm = [a % rank for a in axes]
    out_shape = [1 if i in norm else d for i, d in enumerate(shape)] if keep else [
        d for i, d in enumerate(shape) if i not in norm]
    s_in = r_scale(rng, 1e-4, 1e-2)
    n = int(np.prod([shape[a] for a in set(norm)]))
    # MEAN of n values shrinks their spread by sqrt(n); SUM grows it by sqrt(n).
    spread = 1 / math.sqrt(n) if opname == "MEAN" else math.sqrt(n)
    so = output_scale(rng, float(s_in) * INT16_STD * spread)
    m = OpModel()
    x = m.tensor(shape, "int16", scale=s_in, zero_point=zero_points[0])
    ax = m.tensor([len(axes)], "int32", data=np.array(axes, dtype=np.int32))
    y = m.tensor(out_shape, "int16", scale=so, zero_point=zero_points[1])
    m.op(opname, [x, ax], [y], options("ReducerOptionsT", keepDims=keep), "ReducerOptions")
    return f"{opname} {shape} axes={axes} keep={keep} zp={zero_points}", m.build([x], [y]), list(shape)


@pytest.mark.parametrize("opname", ["MEAN", "SUM"])
def test_reductions_int16_match_tflm(opname, kernel_objects, tmp_path):
    rng = np.random.default_rng(sum(map(ord, opname)) + 161)
    models = []
    for v in range(VARIANTS):
        rank = int(rng.integers(1, 5))
        shape = r_shape(rng, rank, hi=7)
        k = int(rng.integers(1, rank + 1))
        axes = sorted(rng.choice(rank, size=k, replace=False).tolist())
        axes = [a - rank if rng.random() < 0.3 else a for a in axes]  # negative axes too
        models.append(_reduce_model(rng, opname, shape, axes, keep=bool(v % 2)))
    # The step model's RMSNorm mean: [1,1,1,8] over the last axis, keep_dims.
    models.append(_reduce_model(rng, opname, [1, 1, 1, 8], [-1], keep=True))
    models.append(_reduce_model(rng, opname, [1, 1, 1, 8], [3], keep=True, zero_points=(250, -31)))
    assert check_variants(models, kernel_objects, tmp_path, input_fn=int16_inputs) > 0


# ---------------------------------------------------------------------------
# what TFLM refuses (or would misread) is refused at compile time, naming the operator

def test_int16_refusals_name_the_operator(tmp_path):
    from tinyloc_tf.deployment.aot import UnsupportedOperator, compile_tflite

    rng = np.random.default_rng(171)
    # BATCH_MATMUL int16 needs zero points 0 (BatchMatMulPrepare).
    m = OpModel()
    a = m.tensor([1, 4, 3], "int16", scale=np.float32(1e-3), zero_point=5)
    y = m.tensor([1, 4, 4], "int16", scale=np.float32(1e-2), zero_point=0)
    m.op("BATCH_MATMUL", [a, a], [y], options("BatchMatMulOptionsT", adjY=True), "BatchMatMulOptions")
    with pytest.raises(UnsupportedOperator, match=r"operator 0 \(BATCH_MATMUL\).*zero point 0"):
        compile_tflite(m.build([a], [y]), tmp_path / "bmm")
    # An int32 bias on an int16 DEPTHWISE_CONV_2D: TFLM would read it as int64.
    m = OpModel()
    x = m.tensor([1, 1, 4, 2], "int16", scale=np.float32(1e-3))
    w, ws = weights(rng, [1, 1, 4, 2], 3)
    wt = m.tensor(w.shape, scale=ws, zero_point=np.zeros(2, np.int64), data=w, qdim=3)
    b = m.tensor([2], "int32", scale=ws * np.float32(1e-3), data=np.array([1, -1], np.int32))
    y = m.tensor([1, 1, 1, 2], "int16", scale=np.float32(1e-2))
    m.op("DEPTHWISE_CONV_2D", [x, wt, b], [y],
         options("DepthwiseConv2DOptionsT", padding=1, strideH=1, strideW=1, depthMultiplier=1),
         "DepthwiseConv2DOptions")
    with pytest.raises(UnsupportedOperator, match=r"DEPTHWISE_CONV_2D.*must be int64"):
        compile_tflite(m.build([x], [y]), tmp_path / "dw")
