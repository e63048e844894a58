/*
 * tl_elementwise.c - int8 element-wise arithmetic and activations.
 *
 * Semantics follow TFLM's reference kernels (add.cc, sub.cc, mul.cc,
 * squared_difference.cc, maximum_minimum.cc, quantize.cc, activations.cc,
 * logistic.cc, tanh.cc, elu.cc, elementwise.cc (RSQRT), l2norm.cc, softmax.cc).
 */
#include "tl_internal.h"

/* ---- ADD / SUB / SQUARED_DIFFERENCE ---- */

void tl_add_s8(const tl_add_params* p, const tl_broadcast* b, const int8_t* in1,
               const int8_t* in2, int8_t* out) {
  const tl_rescale r = tl_rescale_of(p);
  const int32_t mult = p->output_multiplier, out_off = p->output_offset;
  const int shift = (int)p->output_shift;
  const int32_t lo = p->act_min, hi = p->act_max;
  TL_BROADCAST_LOOP(b, {
    const int32_t sum = TL_RESCALE(r, in1[i1], 1) + TL_RESCALE(r, in2[i2], 2);
    const int32_t raw = tl_mbqm_smaller_than_one(sum, mult, shift) + out_off;
    out[o] = (int8_t)tl_clamp_i32(raw, lo, hi);
  });
}

void tl_sub_s8(const tl_add_params* p, const tl_broadcast* b, const int8_t* in1,
               const int8_t* in2, int8_t* out) {
  const tl_rescale r = tl_rescale_of(p);
  const int32_t mult = p->output_multiplier, out_off = p->output_offset;
  const int shift = (int)p->output_shift;
  const int32_t lo = p->act_min, hi = p->act_max;
  TL_BROADCAST_LOOP(b, {
    const int32_t diff = TL_RESCALE(r, in1[i1], 1) - TL_RESCALE(r, in2[i2], 2);
    const int32_t raw = tl_mbqm_smaller_than_one(diff, mult, shift) + out_off;
    out[o] = (int8_t)tl_clamp_i32(raw, lo, hi);
  });
}

void tl_squared_difference_s8(const tl_add_params* p, const tl_broadcast* b,
                              const int8_t* in1, const int8_t* in2, int8_t* out) {
  const tl_rescale r = tl_rescale_of(p);
  const int32_t mult = p->output_multiplier, out_off = p->output_offset;
  /* The output multiplier may exceed one here, hence the general form. */
  const int left = p->output_shift > 0 ? (int)p->output_shift : 0;
  const int right = p->output_shift > 0 ? 0 : (int)-p->output_shift;
  const int32_t lo = p->act_min, hi = p->act_max;
  TL_BROADCAST_LOOP(b, {
    const int32_t diff = TL_RESCALE(r, in1[i1], 1) - TL_RESCALE(r, in2[i2], 2);
    const int32_t raw = tl_mbqm_split(tl_wrapping_mul(diff, diff), mult, left, right) + out_off;
    out[o] = (int8_t)tl_clamp_i32(raw, lo, hi);
  });
}

/* ---- MUL ---- */

void tl_mul_s8(const tl_mul_params* p, const tl_broadcast* b, const int8_t* in1,
               const int8_t* in2, int8_t* out) {
  const int32_t off1 = p->input1_offset, off2 = p->input2_offset;
  const int32_t mult = p->output_multiplier, out_off = p->output_offset;
  const int left = p->output_shift > 0 ? (int)p->output_shift : 0;
  const int right = p->output_shift > 0 ? 0 : (int)-p->output_shift;
  const int32_t lo = p->act_min, hi = p->act_max;
  TL_BROADCAST_LOOP(b, {
    const int32_t v1 = off1 + in1[i1];
    const int32_t v2 = off2 + in2[i2];
    const int32_t raw = out_off + tl_mbqm_split(v1 * v2, mult, left, right);
    out[o] = (int8_t)tl_clamp_i32(raw, lo, hi);
  });
}

/* ---- MAXIMUM / MINIMUM: compare raw values (inputs share quantization) ---- */

void tl_maximum_s8(const tl_broadcast* b, const int8_t* in1, const int8_t* in2,
                   int8_t* out) {
  TL_BROADCAST_LOOP(b, { out[o] = in1[i1] > in2[i2] ? in1[i1] : in2[i2]; });
}

void tl_minimum_s8(const tl_broadcast* b, const int8_t* in1, const int8_t* in2,
                   int8_t* out) {
  TL_BROADCAST_LOOP(b, { out[o] = in1[i1] < in2[i2] ? in1[i1] : in2[i2]; });
}

/* ---- requantization (QUANTIZE int8 -> int8, RELU) ---- */

void tl_requantize_s8(const tl_requant_params* p, int32_t size, const int8_t* in,
                      int8_t* out) {
  const int left = p->shift > 0 ? (int)p->shift : 0;
  const int right = p->shift > 0 ? 0 : (int)-p->shift;
  for (int32_t i = 0; i < size; ++i) {
    const int32_t v = tl_mbqm_split(in[i] - p->input_zero_point, p->multiplier, left, right) +
                      p->output_zero_point;
    out[i] = (int8_t)tl_clamp_i32(v, p->act_min, p->act_max);
  }
}

void tl_clamp_s8(int8_t lo, int8_t hi, int32_t size, const int8_t* in, int8_t* out) {
  for (int32_t i = 0; i < size; ++i) {
    const int8_t v = in[i];
    out[i] = v > hi ? hi : (v < lo ? lo : v);
  }
}

/* ---- LOGISTIC / TANH: gemmlowp fixed point on a Q4 input ---- */

void tl_logistic_s8(const tl_sigmoid_params* p, int32_t size, const int8_t* in,
                    int8_t* out) {
  for (int32_t i = 0; i < size; ++i) {
    const int32_t input = (int32_t)in[i] - p->input_zero_point;
    if (input <= -p->input_range_radius) {
      out[i] = INT8_MIN;
    } else if (input >= p->input_range_radius) {
      out[i] = INT8_MAX;
    } else {
      const int32_t input_q4 =
          tl_mbqm(input, p->input_multiplier, p->input_left_shift);
      const int32_t output_q0 = tl_logistic_fixed(input_q4, 4);
      /* Q0 -> 1/256 steps, output zero point -128. */
      const int32_t output_q23 = tl_rounding_divide_by_pot(output_q0, 23) - 128;
      out[i] = (int8_t)tl_clamp_i32(output_q23, INT8_MIN, INT8_MAX);
    }
  }
}

void tl_tanh_s8(const tl_sigmoid_params* p, int32_t size, const int8_t* in,
                int8_t* out) {
  for (int32_t i = 0; i < size; ++i) {
    const int32_t input = (int32_t)in[i] - p->input_zero_point;
    if (input <= -p->input_range_radius) {
      out[i] = INT8_MIN;
    } else if (input >= p->input_range_radius) {
      out[i] = INT8_MAX;
    } else {
      const int32_t input_q4 =
          tl_mbqm(input, p->input_multiplier, p->input_left_shift);
      const int32_t output_q0 = tl_tanh_fixed(input_q4, 4);
      /* Q0 -> 1/128 steps, output zero point 0. */
      const int32_t output_q24 = tl_rounding_divide_by_pot(output_q0, 24);
      out[i] = (int8_t)tl_clamp_i32(output_q24, INT8_MIN, INT8_MAX);
    }
  }
}

/* ---- table lookup (ELU int8; table indexed by the input's bit pattern) ---- */

void tl_lut_s8(const int8_t* table, int32_t size, const int8_t* in, int8_t* out) {
  for (int32_t i = 0; i < size; ++i) out[i] = table[(uint8_t)in[i]];
}

/* ---- RSQRT ---- */

int tl_rsqrt_s8(const tl_rsqrt_params* p, int32_t size, const int8_t* in, int8_t* out) {
  const int32_t kShift = 20; /* keeps the intermediate an integer */
  for (int32_t i = 0; i < size; ++i) {
    const int32_t value = (int32_t)in[i] - p->input_offset;
    if (value < 0) return TL_ERROR_RSQRT_NEGATIVE; /* TFLM fails Eval here */
    if (value == 0) {
      out[i] = INT8_MAX; /* any value near 0 maps to the largest output */
      continue;
    }
    int32_t inv_sqrt_multiplier;
    int inv_sqrt_shift;
    tl_get_inv_sqrt_multiplier_exp(value, -1, &inv_sqrt_multiplier, &inv_sqrt_shift);
    const int32_t data = tl_mbqm(1, inv_sqrt_multiplier, inv_sqrt_shift + kShift);
    const int32_t output =
        tl_mbqm(data, p->multiplier, p->shift - kShift) + p->output_offset;
    out[i] = (int8_t)tl_clamp_i32(output, INT8_MIN, INT8_MAX);
  }
  return TL_OK;
}

/* ---- L2_NORMALIZATION int8 (reference_integer_ops::L2Normalization) ---- */

/* Each row of `depth` values divided by its L2 norm. The output is in 1/128 steps with zero
 * point 0 whatever the output tensor says, as in TFLM (the converter always gives it that). */
void tl_l2norm_s8(int32_t outer_size, int32_t depth, int32_t input_zero_point, const int8_t* in,
                  int8_t* out) {
  const int kOutputScale = 7; /* 1/128 */
  for (int32_t row = 0; row < outer_size; ++row) {
    const int8_t* x = in + row * depth;
    int8_t* y = out + row * depth;
    int32_t acc = 0; /* (255)^2 per element: no overflow below 2^15 elements */
    for (int32_t i = 0; i < depth; ++i) {
      const int32_t v = (int32_t)x[i] - input_zero_point;
      acc += v * v;
    }
    int32_t inv_multiplier;
    int inv_shift;
    tl_get_inv_sqrt_multiplier_exp(acc, -1, &inv_multiplier, &inv_shift);
    for (int32_t i = 0; i < depth; ++i) {
      const int32_t v = (int32_t)x[i] - input_zero_point;
      y[i] = (int8_t)tl_clamp_i32(tl_mbqm(v, inv_multiplier, inv_shift + kOutputScale), INT8_MIN, INT8_MAX);
    }
  }
}

/* ---- SOFTMAX int8 -> int8 (output scale 1/256, zero point -128) ---- */

/* exp(beta * scale * diff) in Q0, diff = x - max in [-255, 0]. */
static inline int32_t tl_softmax_exp(const tl_softmax_params* p, int32_t input_diff) {
  if (p->exp_table) return p->exp_table[-input_diff];
  const int32_t scaled_diff =
      tl_mbqm_greater_than_one(input_diff, p->input_multiplier, p->input_left_shift);
  return tl_exp_on_negative_values(scaled_diff, 5); /* input as Q5 */
}

void tl_softmax_s8(const tl_softmax_params* p, const int8_t* in, int8_t* out) {
  const int kAccumulationIntegerBits = 12;
  const int32_t depth = p->depth;
  for (int32_t i = 0; i < p->outer_size; ++i) {
    const int8_t* row = in + i * depth;
    int8_t* out_row = out + i * depth;
    int8_t max_in_row = INT8_MIN;
    for (int32_t c = 0; c < depth; ++c) {
      if (row[c] > max_in_row) max_in_row = row[c];
    }
    int32_t sum_of_exps = 0; /* Q12 */
    for (int32_t c = 0; c < depth; ++c) {
      const int32_t input_diff = (int32_t)row[c] - max_in_row;
      if (input_diff >= p->diff_min) {
        sum_of_exps += tl_rounding_divide_by_pot(tl_softmax_exp(p, input_diff),
                                                 kAccumulationIntegerBits);
      }
    }
    int num_bits_over_unit;
    const int32_t shifted_scale =
        tl_get_reciprocal(sum_of_exps, kAccumulationIntegerBits, &num_bits_over_unit);
    const int exponent = num_bits_over_unit + 31 - 8;
    for (int32_t c = 0; c < depth; ++c) {
      const int32_t input_diff = (int32_t)row[c] - max_in_row;
      if (input_diff >= p->diff_min) {
        const int32_t exp_in_0 = tl_softmax_exp(p, input_diff);
        const int32_t unsat_output =
            tl_rounding_divide_by_pot(tl_srdhm(shifted_scale, exp_in_0), exponent);
        out_row[c] = (int8_t)tl_clamp_i32(unsat_output - 128, INT8_MIN, INT8_MAX);
      } else {
        out_row[c] = INT8_MIN;
      }
    }
  }
}
