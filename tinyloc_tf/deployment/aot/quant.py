"""Prepare-time quantization arithmetic of TensorFlow Lite Micro, in Python.

TFLM computes each kernel's fixed-point multipliers in its Prepare() step,
partly in double and partly in float precision. Bit-exact kernels need
exactly the same integers, so these functions reproduce each formula with the
same precision: Python floats are IEEE doubles, and ``np.float32`` stands in
for C ``float`` wherever TFLM computes in single precision.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math

import numpy as np

from tinyloc_tf.errors import TinylocError

F32 = np.float32


def c_round(x: float) -> float:
    """C/C++ ``round`` (std::round, TfLiteRound): halves away from zero."""
    a = abs(x)
    r = math.floor(a)
    if a - r >= 0.5:  # exact: the fractional part of a double is representable
        r += 1.0
    return math.copysign(r, x)


def _wrap_int32(v: int) -> int:
    """static_cast<int32_t> on x86/Arm: keep the low 32 bits, two's complement."""
    return ((v + (1 << 31)) % (1 << 32)) - (1 << 31)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """QuantizeMultiplier: real ~= m * 2^(shift - 31), m in [2^30, 2^31)."""
    real = float(real)
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(c_round(q * (1 << 31)))
    if q_fixed > (1 << 31):
        raise TinylocError(f"quantized multiplier overflow for {real!r}")
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:  # flush tiny multipliers to zero, as TFLM does
        shift = 0
        q_fixed = 0
    return q_fixed, shift


def quantize_multiplier_smaller_than_one(real: float) -> tuple[int, int]:
    if not (0.0 < real < 1.0):
        raise TinylocError(f"expected a multiplier in (0, 1), got {real!r}")
    m, shift = quantize_multiplier(real)
    if shift > 0:
        raise TinylocError(f"multiplier {real!r} gave a positive shift {shift}")
    return m, shift


def quantize_multiplier_greater_than_one(real: float) -> tuple[int, int]:
    if not real > 1.0:
        raise TinylocError(f"expected a multiplier above 1, got {real!r}")
    m, shift = quantize_multiplier(real)
    if shift < 0:
        raise TinylocError(f"multiplier {real!r} gave a negative shift {shift}")
    return m, shift


def calculate_input_radius(input_integer_bits: int, input_left_shift: int,
                           total_signed_bits: int = 31) -> int:
    """CalculateInputRadius (double-precision branch)."""
    max_input_rescaled = (
        1.0 * ((1 << input_integer_bits) - 1) * float(1 << (total_signed_bits - input_integer_bits))
    ) / float(2.0**input_left_shift)
    return int(math.floor(max_input_rescaled))


def sigmoid_input_params(input_scale: np.float32) -> tuple[int, int, int]:
    """LOGISTIC / TANH int8 Prepare: (multiplier, left_shift, range_radius)
    mapping the int8 input to a Q4 fixed-point value."""
    input_integer_bits = 4
    real = float(input_scale) * float(1 << (31 - input_integer_bits))
    q, left_shift = math.frexp(real)
    multiplier = _wrap_int32(int(c_round(q * (1 << 31))))
    radius = calculate_input_radius(input_integer_bits, left_shift, 31)
    return multiplier, left_shift, radius


def softmax_params(beta: float, input_scale: np.float32) -> tuple[int, int, int]:
    """SOFTMAX int8 Prepare: (input_multiplier, input_left_shift, diff_min)."""
    scaled_diff_integer_bits = 5
    real = min(
        float(F32(beta)) * float(input_scale) * float(1 << (31 - scaled_diff_integer_bits)),
        float((1 << 31) - 1),
    )
    multiplier, left_shift = quantize_multiplier_greater_than_one(real)
    diff_min = int(-1.0 * calculate_input_radius(scaled_diff_integer_bits, left_shift, 31))
    return multiplier, left_shift, diff_min


def quantize_to_int(scale: np.float32, zero_point: int, value: float) -> int:
    """kernel_util Quantize(): zero_point + round(value / scale) in float."""
    tmp = F32(value) / F32(scale)
    return int(zero_point) + int(c_round(float(tmp)))


# The value range of each integer activation type the kernels take.
INTEGER_RANGES = {"int8": (-128, 127), "int16": (-32768, 32767)}


def activation_range(activation: int, scale: np.float32, zero_point: int, dtype: str = "int8") -> tuple[int, int]:
    """CalculateActivationRangeQuantized for ``dtype`` (int8 or int16) outputs.

    ``activation`` is the schema's ActivationFunctionType code:
    0 NONE, 1 RELU, 2 RELU_N1_TO_1, 3 RELU6.
    """
    qmin, qmax = INTEGER_RANGES[dtype]
    if activation == 0:
        return qmin, qmax
    if activation == 1:
        return max(qmin, quantize_to_int(scale, zero_point, 0.0)), qmax
    if activation == 3:
        return (
            max(qmin, quantize_to_int(scale, zero_point, 0.0)),
            min(qmax, quantize_to_int(scale, zero_point, 6.0)),
        )
    if activation == 2:
        return (
            max(qmin, quantize_to_int(scale, zero_point, -1.0)),
            min(qmax, quantize_to_int(scale, zero_point, 1.0)),
        )
    raise TinylocError(f"fused activation code {activation} is not supported")


def activation_range_float(activation: int) -> tuple[float, float]:
    """CalculateActivationRange for float outputs."""
    lowest = float(np.finfo(np.float32).min)
    highest = float(np.finfo(np.float32).max)
    return {
        0: (lowest, highest),
        1: (0.0, highest),
        2: (-1.0, 1.0),
        3: (0.0, 6.0),
    }[int(activation)]


def mean_multiplier(multiplier: int, shift: int, num_elements: int) -> tuple[int, int]:
    """Fold 1/num_elements into a MEAN's multiplier as reduce.h does at Eval."""
    if num_elements <= 0:
        return multiplier, shift
    s = 63 - (64 - int(num_elements).bit_length())  # floor(log2(n))
    s = min(s, 32)
    s = min(s, 31 + shift)
    # 2^s <= n keeps the result below the original multiplier (< 2^31).
    new_multiplier = (int(multiplier) << s) // int(num_elements)
    return new_multiplier, shift - s


_libm_functions: dict = {}


def libm_function(name: str):
    """The C library's float function ``name`` (``expf``, ``logf``) via ctypes, as TFLM's
    Prepare() calls it, or None when libm cannot be loaded (callers fall back to numpy)."""
    if name not in _libm_functions:
        try:
            fn = getattr(ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6"), name)
            fn.restype = ctypes.c_float
            fn.argtypes = [ctypes.c_float]
            _libm_functions[name] = fn
        except (OSError, AttributeError):
            _libm_functions[name] = None
    return _libm_functions[name]
