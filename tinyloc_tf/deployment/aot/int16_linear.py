"""int16x8 lowerings: linear operators with int16 activations and int8 weights.

TFLM runs these through its own int16 kernels: FULLY_CONNECTED, DEPTHWISE_CONV_2D and
BATCH_MATMUL accumulate in int64 (int64 biases) and requantize with the int64 overload of
MultiplyByQuantizedMultiplier; MEAN / SUM sum in int32 as for int8; every result clamps
to the int16 range. Prepare() is the int8 one (same multipliers, same geometry), so the
kernels take the int8 parameter structs.
"""

from __future__ import annotations

from typing import Callable

from tinyloc_tf.deployment.aot import quant
from tinyloc_tf.deployment.aot.lowering import (
    Lowering,
    _activation,
    _conv_geometry,
    _per_channel_multipliers,
    batch_matmul_geometry,
    emit_sum_mean,
    fully_connected_fields,
    require_type,
    require_zero_point_zero,
)
from tinyloc_tf.deployment.aot.reader import Operator

# TensorType code of INT32 in the schema (FullyConnectedOptions.quantized_bias_type).
_TENSOR_TYPE_INT32 = 2


def _activation_range(L: Lowering, op: Operator, out: int) -> tuple[int, int]:
    return quant.activation_range(_activation(op), L.t(out).scale, L.t(out).zero_point, "int16")


def _check_shift(L: Lowering, shifts) -> None:
    """The int64 MultiplyByQuantizedMultiplier shifts by 15 - shift bits: TFLM asserts
    shift < 8, and from 15 on its rounding term is undefined."""
    for sh in shifts:
        if int(sh) > 14:
            raise L.fail(f"requantization shift {int(sh)} is out of range for int16 (the output "
                         "scale is far too small for the input and weight scales)")


# ---------------------------------------------------------------------------
# FULLY_CONNECTED

def lower_fully_connected(L: Lowering, op: Operator):
    """FullyConnectedPrepare / CalculateOpDataFullyConnected and FullyConnectedEval's
    kTfLiteInt16 branch."""
    x, w = op.inputs[:2]
    bias = op.inputs[2] if len(op.inputs) > 2 else -1
    out = op.outputs[0]
    require_type(L, "int16", x, out)
    require_type(L, "int8", w)
    tx, tw, to = L.t(x), L.t(w), L.t(out)
    bias_type = L.t(bias).dtype if bias >= 0 else None
    if bias_type not in (None, "int32", "int64"):
        raise L.fail(f"bias {L.t(bias).describe()} must be int64 or int32")
    # TFLM picks the int32 accumulator for an int32 bias, or for no bias when the
    # options ask for INT32 biases; otherwise the accumulator (and bias) is int64.
    requested = int(getattr(op.options, "quantizedBiasType", 0) or 0) if op.options else 0
    acc32 = bias_type == "int32" or (bias_type is None and requested == _TENSOR_TYPE_INT32)
    if len(tw.scales) > 1:
        qdim = tw.quantized_dimension
        if not 0 <= qdim < len(tw.shape) or tw.shape[qdim] != len(tw.scales):
            raise L.fail(f"{tw.describe()} has {len(tw.scales)} scales for its quantized axis")
    fields, shifts = fully_connected_fields(L, op)
    if not acc32:
        _check_shift(L, shifts)
    lo, hi = _activation_range(L, op, out)
    p = L.struct("tl_fc_params", {
        **fields,
        "input_offset": -tx.zero_point,
        "output_offset": to.zero_point,
        "act_min": lo,
        "act_max": hi,
    })
    kernel = "tl_fully_connected_s16_acc32" if acc32 else "tl_fully_connected_s16"
    b = f"{{T{bias}}}" if bias >= 0 else "NULL"
    L.emit(f"{kernel}(&{p}, {{T{x}}}, {{T{w}}}, {b}, {{T{out}}});", [x, w, bias], [out])


# ---------------------------------------------------------------------------
# DEPTHWISE_CONV_2D

def lower_depthwise_conv_2d(L: Lowering, op: Operator):
    """DepthwiseConvPrepare / CalculateOpDataDepthwiseConv and DepthwiseConvEval's
    kTfLiteInt16 branch (reference_integer_ops::DepthwiseConvPerChannel, int16 overload)."""
    x, w = op.inputs[:2]
    bias = op.inputs[2] if len(op.inputs) > 2 else -1
    out = op.outputs[0]
    require_type(L, "int16", x, out)
    require_type(L, "int8", w)
    if bias >= 0 and L.t(bias).dtype != "int64":
        # TFLM reads the bias of an int16 depthwise convolution as int64 whatever its type.
        raise L.fail(f"bias {L.t(bias).describe()} must be int64")
    tx, tw, to = L.t(x), L.t(w), L.t(out)
    if len(tx.shape) != 4 or len(tw.shape) != 4 or len(to.shape) != 4:
        raise L.fail("DEPTHWISE_CONV_2D needs 4-D input, filter and output")
    n, ih, iw, ic = tx.shape
    _, fh, fw, oc = tw.shape
    _, oh, ow, occ = to.shape
    if occ != oc or oc % ic != 0 or to.shape[0] != n:
        raise L.fail(f"inconsistent shapes {tx.shape} * {tw.shape} -> {to.shape}")
    mults, shifts = _per_channel_multipliers(L, x, w, out, oc)
    _check_shift(L, shifts)
    lo, hi = _activation_range(L, op, out)
    fields = {
        "batches": n, "input_height": ih, "input_width": iw, "input_depth": ic,
        "filter_height": fh, "filter_width": fw, "depth_multiplier": oc // ic,
        "output_height": oh, "output_width": ow, "output_depth": oc,
    }
    fields.update(_conv_geometry(L, op, ih, iw, fh, fw, oh, ow))
    fields.update({
        # TFLM's int16 kernel applies no zero points (int16 activations are symmetric).
        "input_offset": 0,
        "output_offset": 0,
        "output_multiplier": L.int32_array(mults),
        "output_shift": L.int32_array(shifts),
        "act_min": lo,
        "act_max": hi,
    })
    p = L.struct("tl_dwconv_params", fields)
    b = f"{{T{bias}}}" if bias >= 0 else "NULL"
    L.emit(f"tl_depthwise_conv2d_s16(&{p}, {{T{x}}}, {{T{w}}}, {b}, {{T{out}}});",
           [x, w, bias], [out])


# ---------------------------------------------------------------------------
# BATCH_MATMUL

def lower_batch_matmul(L: Lowering, op: Operator):
    """BatchMatMulPrepare and BatchMatMulEval's EvalInt16; adj_x / adj_y and batch
    broadcasting become strides, as in the int8 lowering."""
    a, b = op.inputs[:2]
    out = op.outputs[0]
    require_type(L, "int16", a, b, out)
    require_zero_point_zero(L, a, b, out)
    ta, tb, to = L.t(a), L.t(b), L.t(out)
    geometry = batch_matmul_geometry(L, op)
    m, sh = quant.quantize_multiplier(float(ta.scale * tb.scale) / float(to.scale))
    _check_shift(L, [sh])
    p = L.struct("tl_batch_matmul_params", {
        **geometry,
        "lhs_offset": 0,
        "rhs_offset": 0,
        "output_offset": 0,
        "output_multiplier": m,
        "output_shift": sh,
        # BATCH_MATMUL has no fused activation
        "act_min": quant.INTEGER_RANGES["int16"][0],
        "act_max": quant.INTEGER_RANGES["int16"][1],
    })
    L.emit(f"tl_batch_matmul_s16(&{p}, {{T{a}}}, {{T{b}}}, {{T{out}}});", [a, b], [out])


# ---------------------------------------------------------------------------
# MEAN / SUM

def _lower_sum_mean(L: Lowering, op: Operator, is_mean: bool):
    """PrepareMeanOrSumHelper and EvalMeanHelper / EvalSumHelper for int16."""
    require_type(L, "int16", op.inputs[0], op.outputs[0])
    emit_sum_mean(L, op, is_mean, "tl_reduce_sum_s16")


def lower_mean(L: Lowering, op: Operator):
    _lower_sum_mean(L, op, is_mean=True)


def lower_sum(L: Lowering, op: Operator):
    _lower_sum_mean(L, op, is_mean=False)


LOWERINGS: dict[str, Callable[[Lowering, Operator], None]] = {
    "FULLY_CONNECTED": lower_fully_connected,
    "DEPTHWISE_CONV_2D": lower_depthwise_conv_2d,
    "BATCH_MATMUL": lower_batch_matmul,
    "MEAN": lower_mean,
    "SUM": lower_sum,
}
