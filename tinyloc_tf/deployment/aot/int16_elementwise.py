"""int16x8 lowerings: elementwise operators with int16 activations and int8 weights.

Each lowering does what TFLM's Prepare() does for int16 tensors (ADD / SUB with 15 bits of
headroom, MUL, LOGISTIC's table rescaling, RSQRT, QUANTIZE between integer types) and emits a
call into ``kernels/tl_int16_elementwise.c``.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from tinyloc_tf.deployment.aot import quant
from tinyloc_tf.deployment.aot.lowering import (
    Lowering,
    _activation,
    _c_double,
    _c_float,
    _emit_binary,
    _rescaled_pair_params,
    require_type,
    require_zero_point_zero,
)
from tinyloc_tf.deployment.aot.reader import Operator


# ---------------------------------------------------------------------------
# Prepare-time arithmetic

def _logf(x: np.float32) -> np.float32:
    """logf as the C library computes it (CheckedLog2 calls it at Prepare time); numpy's
    float32 log when libm cannot be loaded."""
    logf = quant.libm_function("logf")
    return np.float32(logf(float(x))) if logf else np.log(np.float32(x))


def checked_log2(x: np.float32) -> tuple[bool, int]:
    """CheckedLog2: (whether x is a power of two to 1e-3 in float, round(log2 x))."""
    x_log2 = np.float32(_logf(np.float32(x)) * (np.float32(1.0) / _logf(np.float32(2.0))))
    rounded = np.float32(quant.c_round(float(x_log2)))
    frac = np.float32(x_log2 - rounded)
    return bool(abs(frac) < np.float32(1e-3)), int(rounded)


def logistic_s16_params(input_scale: np.float32) -> tuple[int, int]:
    """LOGISTIC int16 Prepare (logistic_common.cc): (input_multiplier, input_left_shift) that
    bring the input to 1/(3 * 4096) steps, with the kernel's power-of-two case (multiplier 0
    meaning 3 << shift, shift 0) already resolved."""
    input_integer_bits = 3
    pot, log2 = checked_log2(input_scale)
    left_shift = (15 - input_integer_bits) + log2
    if pot and left_shift == 0:
        return 3, 0
    multiplier = float(input_scale) * 4096.0 * 3.0
    left_shift = 0
    while multiplier <= 32767.0 / 2.0 and left_shift <= 30:
        left_shift += 1
        multiplier *= 2.0
    return int(multiplier), left_shift


# ---------------------------------------------------------------------------
# binary ops

def _lower_add_sub(L: Lowering, op: Operator, name: str):
    """ADD / SUB int16 (add_common.cc / sub_common.cc): the int8 general-rescaling arithmetic
    with left_shift 15.

    Both compute the rescaling ratios in double, as the tflite-micro wheel does for SUB too;
    the pinned TFLM source's sub_common.cc computes SUB's in float, which moves a few int16
    outputs in ten thousand by one step where the two roundings differ."""
    a, b = op.inputs[:2]
    out = op.outputs[0]
    require_type(L, "int16", a, b, out)
    s1, s2, so = L.t(a).scale, L.t(b).scale, L.t(out).scale
    left_shift = 15
    twice_max = 2.0 * float(max(s1, s2))
    r1 = float(s1) / twice_max
    r2 = float(s2) / twice_max
    ro = twice_max / ((1 << left_shift) * float(so))
    lo, hi = quant.activation_range(_activation(op), so, L.t(out).zero_point, "int16")
    params = _rescaled_pair_params(L, a, b, out, r1, r2, quant.quantize_multiplier_smaller_than_one(ro),
                                   left_shift, lo, hi)
    _emit_binary(L, f"tl_{name.lower()}_s16", "tl_add_params", params, a, b, out)


def lower_add(L: Lowering, op: Operator):
    _lower_add_sub(L, op, "ADD")


def lower_sub(L: Lowering, op: Operator):
    _lower_add_sub(L, op, "SUB")


def lower_mul(L: Lowering, op: Operator):
    """MUL int16 x int16 -> int16 (mul_common.cc): one multiplier, zero points 0."""
    a, b = op.inputs[:2]
    out = op.outputs[0]
    require_type(L, "int16", a, b, out)
    require_zero_point_zero(L, a, b, out)
    real = float(L.t(a).scale) * float(L.t(b).scale) / float(L.t(out).scale)
    m, sh = quant.quantize_multiplier(real)
    lo, hi = quant.activation_range(_activation(op), L.t(out).scale, 0, "int16")
    params = {
        "input1_offset": 0,
        "input2_offset": 0,
        "output_offset": 0,
        "output_multiplier": m,
        "output_shift": sh,
        "act_min": lo,
        "act_max": hi,
    }
    _emit_binary(L, "tl_mul_s16", "tl_mul_params", params, a, b, out)


# ---------------------------------------------------------------------------
# unary ops

def lower_logistic(L: Lowering, op: Operator):
    """LOGISTIC int16 (logistic_common.cc): output scale 2^-15, zero points 0."""
    x, out = op.inputs[0], op.outputs[0]
    require_type(L, "int16", x, out)
    require_zero_point_zero(L, x, out)
    pot, log2 = checked_log2(L.t(out).scale)
    if not pot or log2 != -15:
        raise L.fail(f"int16 LOGISTIC needs output scale 2^-15 (as TFLM), got {float(L.t(out).scale)!r}")
    m, ls = logistic_s16_params(L.t(x).scale)
    if m >= 1 << 16:
        # x * m would overflow an int32 (TFLM only DCHECKs that m stays below 2^15).
        raise L.fail(f"int16 LOGISTIC input scale {float(L.t(x).scale)!r} is too large "
                     "(the input multiplier must stay below 2^16)")
    p = L.struct("tl_logistic_s16_params", {"input_multiplier": m, "input_left_shift": ls})
    L.emit(f"tl_logistic_s16(&{p}, {L.t(x).size}, {{T{x}}}, {{T{out}}});", [x], [out],
           inplace=[(out, x)])


def lower_rsqrt(L: Lowering, op: Operator):
    """RSQRT int16 (elementwise.cc's RsqrtEvalQuantized<int16_t>).

    The output multiplier takes the square root of the input scale in double, as the
    tflite-micro wheel does; the pinned TFLM source's SetRsqrtOutputMultiplier takes it in
    float, which moves a few int16 outputs in ten thousand by one step."""
    x, out = op.inputs[0], op.outputs[0]
    require_type(L, "int16", x, out)
    require_zero_point_zero(L, x, out)
    si, so = L.t(x).scale, L.t(out).scale
    real = 1.0 / (math.sqrt(float(si)) * float(so))
    m, sh = quant.quantize_multiplier(real)
    p = L.struct("tl_rsqrt_params", {"input_offset": 0, "output_offset": 0, "multiplier": m, "shift": sh})
    L.emit(
        [f"if (tl_rsqrt_s16(&{p}, {L.t(x).size}, {{T{x}}}, {{T{out}}}) != TL_OK) return {{FAIL}};"],
        [x], [out], inplace=[(out, x)], can_fail=True,
    )


_REQUANTIZE_KERNELS = {
    ("int16", "int16"): "tl_requantize_s16",
    ("int16", "int8"): "tl_requantize_s16_s8",
    ("int8", "int16"): "tl_requantize_s8_s16",
}


def lower_quantize(L: Lowering, op: Operator):
    """QUANTIZE (quantize_common.cc) with an int16 side: int16 <-> int16 / int8 requantization
    (reference_ops::Requantize) and float32 -> int16 (AffineQuantize)."""
    x, out = op.inputs[0], op.outputs[0]
    tx, to = L.t(x), L.t(out)
    if not to.is_quantized or len(to.scales) != 1:
        raise L.fail("QUANTIZE needs a per-tensor quantized output (as TFLM)")
    if tx.dtype == "float32" and to.dtype == "int16":
        L.emit(f"tl_quantize_f32_s16({to.zero_point}, {_c_float(to.scale)}, {to.size}, {{T{x}}}, {{T{out}}});",
               [x], [out])
        return
    kernel = _REQUANTIZE_KERNELS.get((tx.dtype, to.dtype))
    if kernel is None:
        raise L.fail(f"QUANTIZE {tx.dtype} -> {to.dtype} is not supported "
                     "(int16 <-> int16 / int8 and float32 -> int16 are)")
    require_type(L, tx.dtype, x)
    m, sh = quant.quantize_multiplier(float(tx.scale) / float(to.scale))
    lo, hi = quant.INTEGER_RANGES[to.dtype]
    p = L.struct("tl_requant_params", {
        "input_zero_point": tx.zero_point,
        "output_zero_point": to.zero_point,
        "multiplier": m,
        "shift": sh,
        "act_min": lo,
        "act_max": hi,
    })
    inplace = [(out, x)] if tx.itemsize == to.itemsize else []
    L.emit(f"{kernel}(&{p}, {tx.size}, {{T{x}}}, {{T{out}}});", [x], [out], inplace=inplace)


def lower_dequantize(L: Lowering, op: Operator):
    """DEQUANTIZE int16 -> float32 (reference_ops::Dequantize)."""
    x, out = op.inputs[0], op.outputs[0]
    tx, to = L.t(x), L.t(out)
    require_type(L, "int16", x)
    if to.dtype != "float32":
        raise L.fail(f"DEQUANTIZE int16 -> {to.dtype} is not supported (float32 only)")
    if len(tx.scales) != 1:
        raise L.fail("per-channel DEQUANTIZE is not supported")
    L.emit(f"tl_dequantize_s16_f32({tx.zero_point}, {_c_double(float(tx.scale))}, {tx.size}, "
           f"{{T{x}}}, {{T{out}}});", [x], [out])


LOWERINGS: dict[str, Callable[[Lowering, Operator], None]] = {
    "ADD": lower_add,
    "SUB": lower_sub,
    "MUL": lower_mul,
    "LOGISTIC": lower_logistic,
    "RSQRT": lower_rsqrt,
    "QUANTIZE": lower_quantize,
    "DEQUANTIZE": lower_dequantize,
}
