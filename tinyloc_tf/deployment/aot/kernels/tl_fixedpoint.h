/*
 * tl_fixedpoint.h - integer arithmetic shared by the tinyloc AOT kernels.
 *
 * Written for this project from the semantics of TensorFlow Lite's reference
 * kernels (which build on gemmlowp's fixedpoint.h). Every function here must
 * round and saturate exactly as those do, because the kernels promise
 * bit-exact results against TensorFlow Lite Micro. TFLM's default build uses
 * the "double rounding" MultiplyByQuantizedMultiplier, so that is what lives
 * here.
 *
 * Notation: a "Qm" value is an int32 fixed-point number with m integer bits
 * and 31 - m fractional bits (gemmlowp's FixedPoint<int32_t, m>).
 */
#ifndef TL_FIXEDPOINT_H_
#define TL_FIXEDPOINT_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The small helpers below sit in every kernel's innermost loop; size-optimised
 * builds (-Os) would otherwise turn each into a call. */
#if defined(__GNUC__)
#define TL_HOT static inline __attribute__((always_inline))
#else
#define TL_HOT static inline
#endif

#define TL_INT32_MAX ((int32_t)0x7fffffff)
#define TL_INT32_MIN ((int32_t)(-0x7fffffff - 1))

TL_HOT int32_t tl_min_i32(int32_t a, int32_t b) { return a < b ? a : b; }
TL_HOT int32_t tl_max_i32(int32_t a, int32_t b) { return a > b ? a : b; }
TL_HOT int32_t tl_clamp_i32(int32_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

/* a * 2^shift with two's-complement wrap-around (TFLite writes x * (1 << s)
 * on int32 and relies on the hardware wrapping; doing it on uint32 keeps the
 * same bits without undefined behaviour). */
TL_HOT int32_t tl_wrapping_shl(int32_t x, int shift) {
  return (int32_t)((uint32_t)x << shift);
}

TL_HOT int32_t tl_wrapping_mul(int32_t a, int32_t b) {
  return (int32_t)((uint32_t)a * (uint32_t)b);
}

/* VQRDMULH: round(a * b / 2^31), saturating the single overflow case. */
TL_HOT int32_t tl_srdhm(int32_t a, int32_t b) {
  if (a == b && a == TL_INT32_MIN) return TL_INT32_MAX;
  const int64_t ab = (int64_t)a * (int64_t)b;
  const int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* Rounding arithmetic right shift, ties away from zero (0 <= exponent <= 31). */
TL_HOT int32_t tl_rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* x * 2^exponent, saturating for exponent > 0 and rounding for exponent < 0. */
TL_HOT int32_t tl_saturating_rounding_mul_by_pot(int32_t x, int exponent) {
  if (exponent > 0) {
    const int32_t threshold = (int32_t)((1u << (31 - exponent)) - 1u);
    if (x > threshold) return TL_INT32_MAX;
    if (x < -threshold) return TL_INT32_MIN;
    return tl_wrapping_shl(x, exponent);
  }
  if (exponent < 0) return tl_rounding_divide_by_pot(x, -exponent);
  return x;
}

/* TFLite MultiplyByQuantizedMultiplier (double rounding): x * m * 2^shift
 * where m is a Q31 multiplier in [2^30, 2^31). */
TL_HOT int32_t tl_mbqm(int32_t x, int32_t multiplier, int shift) {
  const int left_shift = shift > 0 ? shift : 0;
  const int right_shift = shift > 0 ? 0 : -shift;
  return tl_rounding_divide_by_pot(
      tl_srdhm(tl_wrapping_shl(x, left_shift), multiplier), right_shift);
}

/* tl_mbqm with the shift already split into its left and right parts, for
 * loops that apply one multiplier to many values. */
TL_HOT int32_t tl_mbqm_split(int32_t x, int32_t multiplier, int left_shift,
                             int right_shift) {
  return tl_rounding_divide_by_pot(tl_srdhm(tl_wrapping_shl(x, left_shift), multiplier),
                                   right_shift);
}

/* MultiplyByQuantizedMultiplierSmallerThanOneExp (shift <= 0). */
TL_HOT int32_t tl_mbqm_smaller_than_one(int32_t x, int32_t multiplier,
                                               int shift) {
  return tl_rounding_divide_by_pot(tl_srdhm(x, multiplier), -shift);
}

/* MultiplyByQuantizedMultiplierGreaterThanOne (shift >= 0). */
TL_HOT int32_t tl_mbqm_greater_than_one(int32_t x, int32_t multiplier,
                                               int shift) {
  return tl_srdhm(tl_wrapping_shl(x, shift), multiplier);
}

/* ---- transcendental functions in fixed point (gemmlowp algorithms) ---- */

/* exp(a) for a in [-1/4, 0), a and result in Q0. */
static inline int32_t tl_exp_on_interval_minus_quarter_to_zero(int32_t a) {
  const int32_t constant_term = 1895147668;    /* exp(-1/8) in Q0 */
  const int32_t constant_1_over_3 = 715827883; /* 1/3 in Q0 */
  /* Taylor expansion around -1/8: x = a + 1/8. */
  const int32_t x = a + (1 << 28);
  const int32_t x2 = tl_srdhm(x, x);
  const int32_t x3 = tl_srdhm(x2, x);
  const int32_t x4 = tl_srdhm(x2, x2);
  const int32_t x4_over_4 = tl_rounding_divide_by_pot(x4, 2);
  const int32_t x4_over_24_plus_x3_over_6_plus_x2_over_2 =
      tl_rounding_divide_by_pot(tl_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1);
  return constant_term +
         tl_srdhm(constant_term, x + x4_over_24_plus_x3_over_6_plus_x2_over_2);
}

/* exp(a) for a <= 0; a in Q(integer_bits), result in Q0. */
static inline int32_t tl_exp_on_negative_values(int32_t a, int integer_bits) {
  static const int32_t kBarrel[7] = {
      1672461947, /* exp(-1/4) */
      1302514674, /* exp(-1/2) */
      790015084,  /* exp(-1)   */
      290630308,  /* exp(-2)   */
      39332535,   /* exp(-4)   */
      720401,     /* exp(-8)   */
      242,        /* exp(-16)  */
  };
  const int fractional_bits = 31 - integer_bits;
  const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
  const int32_t mask = one_quarter - 1;
  const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
  int32_t result = tl_exp_on_interval_minus_quarter_to_zero(
      tl_saturating_rounding_mul_by_pot(a_mod_quarter_minus_one_quarter, integer_bits));
  const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
  /* The whole multiples of 1/4 are applied bit by bit: exp(-2^e) factors. */
  for (int e = -2; e <= 4; ++e) {
    if (integer_bits > e) {
      const int shift_amount = fractional_bits + e;
      if (remainder & ((int32_t)1 << shift_amount)) {
        result = tl_srdhm(result, kBarrel[e + 2]);
      }
    }
  }
  if (integer_bits > 5) {
    const int32_t clamp = -((int32_t)1 << (36 - integer_bits)); /* -32.0 */
    if (a < clamp) result = 0;
  }
  if (a == 0) result = TL_INT32_MAX;
  return result;
}

/* Newton-Raphson 1 / (1 + x) for x in (0, 1); Q0 in, Q0 out. */
static inline int32_t tl_one_over_one_plus_x_for_x_in_0_1(int32_t a) {
  const int64_t sum = (int64_t)a + TL_INT32_MAX;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  const int32_t constant_48_over_17 = 1515870810;      /* Q2 */
  const int32_t constant_neg_32_over_17 = -1010580540; /* Q2 */
  const int32_t one_q2 = (int32_t)1 << 29; /* 1.0 in Q2 */
  int32_t x = constant_48_over_17 + tl_srdhm(half_denominator, constant_neg_32_over_17);
  for (int i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = tl_srdhm(half_denominator, x);
    const int32_t one_minus_half_denominator_times_x = one_q2 - half_denominator_times_x;
    x = x + tl_saturating_rounding_mul_by_pot(
                tl_srdhm(x, one_minus_half_denominator_times_x), 2);
  }
  /* x is Q2 of 1/half_denominator; halving it reinterprets it as Q1. */
  return tl_saturating_rounding_mul_by_pot(x, 1);
}

/* Newton-Raphson (1 - x) / (1 + x) for x in (0, 1); Q0 in, Q0 out. */
static inline int32_t tl_one_minus_x_over_one_plus_x_for_x_in_0_1(int32_t a) {
  const int64_t sum = (int64_t)a + TL_INT32_MAX;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  const int32_t constant_48_over_17 = 1515870810;
  const int32_t constant_neg_32_over_17 = -1010580540;
  const int32_t one_q2 = (int32_t)1 << 29; /* 1.0 in Q2 */
  int32_t x = constant_48_over_17 + tl_srdhm(half_denominator, constant_neg_32_over_17);
  for (int i = 0; i < 3; ++i) {
    const int32_t half_denominator_times_x = tl_srdhm(half_denominator, x);
    const int32_t one_minus_half_denominator_times_x = one_q2 - half_denominator_times_x;
    x = x + tl_saturating_rounding_mul_by_pot(
                tl_srdhm(x, one_minus_half_denominator_times_x), 2);
  }
  return tl_saturating_rounding_mul_by_pot(x - one_q2, 2);
}

/* logistic(a); a in Q(integer_bits), result in Q0. */
static inline int32_t tl_logistic_fixed(int32_t a, int integer_bits) {
  if (a == 0) return (int32_t)1 << 30; /* 0.5 */
  const int positive = a > 0;
  const int32_t abs_input = positive ? a : -a;
  const int32_t result_if_positive = tl_one_over_one_plus_x_for_x_in_0_1(
      tl_exp_on_negative_values(-abs_input, integer_bits));
  return positive ? result_if_positive : TL_INT32_MAX - result_if_positive;
}

/* tanh(a); a in Q(integer_bits), result in Q0. */
static inline int32_t tl_tanh_fixed(int32_t a, int integer_bits) {
  if (a == 0) return 0;
  const int negative = a < 0;
  const int32_t n = negative ? a : -a;
  /* tanh(|a|) = (1 - exp(-2|a|)) / (1 + exp(-2|a|)); doubling n is free by
   * reading it with one more integer bit. */
  const int32_t t = tl_one_minus_x_over_one_plus_x_for_x_in_0_1(
      tl_exp_on_negative_values(n, integer_bits + 1));
  return negative ? -t : t;
}

static inline int tl_count_leading_zeros_u32(uint32_t x) {
  if (x == 0) return 32;
#if defined(__GNUC__)
  return __builtin_clz(x);
#else
  int n = 0;
  while (!(x & 0x80000000u)) {
    x <<= 1;
    ++n;
  }
  return n;
#endif
}

/* GetReciprocal: 1/x for x in Q(x_integer_digits), returned as a Q0 mantissa
 * and the number of bits it must still be shifted by. */
static inline int32_t tl_get_reciprocal(int32_t x, int x_integer_digits,
                                        int* num_bits_over_unit) {
  const int headroom_plus_one = tl_count_leading_zeros_u32((uint32_t)x);
  *num_bits_over_unit = x_integer_digits - headroom_plus_one;
  const int32_t shifted_sum_minus_one =
      (int32_t)(((uint32_t)x << headroom_plus_one) - ((uint32_t)1 << 31));
  return tl_one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);
}

/* GetInvSqrtQuantizedMultiplierExp: 1/sqrt(input) as multiplier and shift. */
static inline void tl_get_inv_sqrt_multiplier_exp(int32_t input, int reverse_shift,
                                                  int32_t* output_inv_sqrt,
                                                  int* output_shift) {
  if (input <= 1) {
    *output_inv_sqrt = TL_INT32_MAX;
    *output_shift = 0;
    return;
  }
  *output_shift = 11;
  while (input >= (1 << 29)) {
    input /= 4;
    ++*output_shift;
  }
  const unsigned max_left_shift_bits =
      (unsigned)tl_count_leading_zeros_u32((uint32_t)input) - 1u;
  const unsigned max_left_shift_bit_pairs = max_left_shift_bits / 2u;
  const unsigned left_shift_bit_pairs = max_left_shift_bit_pairs - 1u;
  *output_shift -= (int)left_shift_bit_pairs;
  input <<= 2 * left_shift_bit_pairs;
  /* Newton-Raphson for 1/sqrt in Q3, starting from 1. */
  const int32_t fixedpoint_input = input >> 1;
  const int32_t fixedpoint_half_input = tl_rounding_divide_by_pot(fixedpoint_input, 1);
  const int32_t fixedpoint_half_three = (1 << 28) + (1 << 27); /* 1.5 in Q3 */
  int32_t x = (int32_t)1 << 28;                                /* 1.0 in Q3 */
  for (int i = 0; i < 5; ++i) {
    /* x*x*x is Q9; back to Q3. */
    const int32_t x3 =
        tl_saturating_rounding_mul_by_pot(tl_srdhm(tl_srdhm(x, x), x), 6);
    /* Both products are Q6; back to Q3. */
    x = tl_saturating_rounding_mul_by_pot(
        tl_srdhm(fixedpoint_half_three, x) - tl_srdhm(fixedpoint_half_input, x3), 3);
  }
  const int32_t fixedpoint_half_sqrt_2 = 1518500250; /* sqrt(2)/2 in Q0 */
  x = tl_srdhm(x, fixedpoint_half_sqrt_2);
  *output_inv_sqrt = x;
  if (*output_shift < 0) {
    *output_inv_sqrt = tl_wrapping_shl(*output_inv_sqrt, -*output_shift);
    *output_shift = 0;
  }
  *output_shift *= reverse_shift;
}

#ifdef __cplusplus
}
#endif

#endif /* TL_FIXEDPOINT_H_ */
