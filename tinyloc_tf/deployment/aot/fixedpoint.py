"""gemmlowp / TFLite fixed-point arithmetic on numpy arrays, for tables.

The same integer functions as ``kernels/tl_fixedpoint.h``, vectorised, so the
compiler can evaluate an int8 -> int8 activation on all 256 possible inputs
once and emit a lookup table (bit-exact by construction: an int8 op's output
depends on nothing but the input value). int32 values are carried in int64
arrays; every place where C would wrap an int32 wraps here too.
"""

from __future__ import annotations

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def wrap32(x):
    x = np.asarray(x, dtype=np.int64)
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def srdhm(a, b):
    """VQRDMULH: round(a * b / 2^31), C truncating division after the nudge."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == b) & (a == INT32_MIN)
    ab = a * b
    nudged = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    q = np.sign(nudged) * (np.abs(nudged) >> 31)  # truncation toward zero
    return np.where(overflow, INT32_MAX, q)


def rounding_divide_by_pot(x, exponent: int):
    x = np.asarray(x, dtype=np.int64)
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def saturating_rounding_mul_by_pot(x, exponent: int):
    x = np.asarray(x, dtype=np.int64)
    if exponent > 0:
        threshold = (1 << (31 - exponent)) - 1
        return np.where(x > threshold, INT32_MAX,
                        np.where(x < -threshold, INT32_MIN, wrap32(x << exponent)))
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    return x


def mbqm(x, multiplier: int, shift: int):
    """MultiplyByQuantizedMultiplier (double rounding)."""
    left = shift if shift > 0 else 0
    right = -shift if shift < 0 else 0
    return rounding_divide_by_pot(srdhm(wrap32(np.asarray(x, np.int64) << left), multiplier), right)


def mbqm_greater_than_one(x, multiplier: int, shift: int):
    return srdhm(wrap32(np.asarray(x, np.int64) << shift), multiplier)


def _exp_on_interval_minus_quarter_to_zero(a):
    constant_term = 1895147668
    constant_1_over_3 = 715827883
    x = wrap32(a + (1 << 28))
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(wrap32(srdhm(wrap32(x4_over_4 + x3), constant_1_over_3) + x2), 1)
    return wrap32(constant_term + srdhm(constant_term, wrap32(x + poly)))


_BARREL = (1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242)


def exp_on_negative_values(a, integer_bits: int):
    a = np.asarray(a, dtype=np.int64)
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    mask = one_quarter - 1
    a_mod = (a & mask) - one_quarter
    result = _exp_on_interval_minus_quarter_to_zero(
        saturating_rounding_mul_by_pot(a_mod, integer_bits))
    remainder = wrap32(a_mod - a)
    for e in range(-2, 5):
        if integer_bits > e:
            bit = 1 << (fractional_bits + e)
            result = np.where(remainder & bit, srdhm(result, _BARREL[e + 2]), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _newton_reciprocal_q2(a):
    s = a + INT32_MAX
    half_denominator = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))
    one_q2 = 1 << 29
    x = wrap32(1515870810 + srdhm(half_denominator, -1010580540))
    for _ in range(3):
        hx = srdhm(half_denominator, x)
        x = wrap32(x + saturating_rounding_mul_by_pot(srdhm(x, wrap32(one_q2 - hx)), 2))
    return x


def one_over_one_plus_x_for_x_in_0_1(a):
    return saturating_rounding_mul_by_pot(_newton_reciprocal_q2(np.asarray(a, np.int64)), 1)


def one_minus_x_over_one_plus_x_for_x_in_0_1(a):
    x = _newton_reciprocal_q2(np.asarray(a, np.int64))
    return saturating_rounding_mul_by_pot(wrap32(x - (1 << 29)), 2)


def logistic(a, integer_bits: int):
    a = np.asarray(a, dtype=np.int64)
    positive = a > 0
    abs_input = np.where(positive, a, -a)
    r = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-abs_input, integer_bits))
    return np.where(a == 0, 1 << 30, np.where(positive, r, INT32_MAX - r))


def tanh(a, integer_bits: int):
    a = np.asarray(a, dtype=np.int64)
    negative = a < 0
    n = np.where(negative, a, -a)
    t = one_minus_x_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(n, integer_bits + 1))
    return np.where(a == 0, 0, np.where(negative, -t, t))


def _by_bit_pattern(values_for_minus128_to_127: np.ndarray) -> np.ndarray:
    """Reorder a table over inputs -128..127 so it is indexed by (uint8)input."""
    table = np.zeros(256, dtype=np.int8)
    table[np.arange(-128, 128).astype(np.uint8)] = values_for_minus128_to_127.astype(np.int8)
    return table


def sigmoid_table(kind: str, zero_point: int, range_radius: int, multiplier: int,
                  left_shift: int) -> np.ndarray:
    """LOGISTIC or TANH int8 output for every int8 input (reference_integer_ops)."""
    x = np.arange(-128, 128, dtype=np.int64) - zero_point
    q4 = mbqm(x, multiplier, left_shift)
    if kind == "logistic":
        out = rounding_divide_by_pot(logistic(q4, 4), 23) - 128
        lo, hi = -128, 127
    else:
        out = rounding_divide_by_pot(tanh(q4, 4), 24)
        lo, hi = -128, 127
    out = np.clip(out, lo, hi)
    out = np.where(x <= -range_radius, -128, np.where(x >= range_radius, 127, out))
    return _by_bit_pattern(out)


def softmax_exp_table(input_multiplier: int, input_left_shift: int, diff_min: int) -> np.ndarray:
    """exp(beta * scale * d) in Q0 for the 256 possible differences d = x - max
    (d = 0, -1, ..., -255, indexed by -d); entries below diff_min are unused."""
    d = -np.arange(256, dtype=np.int64)
    scaled = mbqm_greater_than_one(d, input_multiplier, input_left_shift)
    table = exp_on_negative_values(scaled, 5)
    return np.where(d >= diff_min, table, 0).astype(np.int64)
