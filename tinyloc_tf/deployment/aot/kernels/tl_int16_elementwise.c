/*
 * tl_int16_elementwise.c - int16x8 element-wise arithmetic and activations.
 *
 * Semantics follow TFLM's reference kernels for int16 tensors (add.cc, sub.cc,
 * mul.cc, logistic.cc, elementwise.cc (RSQRT), quantize.cc, dequantize.cc).
 * TFLM's int16 arithmetic is its own: wider headroom for ADD / SUB, a
 * table-interpolated sigmoid, and int16 clamps.
 */
#include <math.h>

#include "tl_internal.h"

/* ---- ADD / SUB ---- */

/* Each input is (x - zp) << 15 times a ratio of at most 1/2 (TL_RESCALE), so the sum
 * or difference of two stays within an int32 (|x - zp| <= 65535). */

/* reference_ops::AddElementwise / BroadcastAdd6DSlow (int16, general scales). */
void tl_add_s16(const tl_add_params* p, const tl_broadcast* b, const int16_t* in1,
                const int16_t* in2, int16_t* out) {
  const tl_rescale r = tl_rescale_of(p);
  const int32_t mult = p->output_multiplier, out_off = p->output_offset;
  const int shift = (int)p->output_shift;
  const int32_t lo = p->act_min, hi = p->act_max;
  TL_BROADCAST_LOOP(b, {
    const int32_t sum = TL_RESCALE(r, in1[i1], 1) + TL_RESCALE(r, in2[i2], 2);
    const int32_t raw = tl_mbqm_smaller_than_one(sum, mult, shift) + out_off;
    out[o] = (int16_t)tl_clamp_i32(raw, lo, hi);
  });
}

/* reference_ops::SubElementwise / BroadcastQuantSubSlow (int16). */
void tl_sub_s16(const tl_add_params* p, const tl_broadcast* b, const int16_t* in1,
                const int16_t* in2, int16_t* out) {
  const tl_rescale r = tl_rescale_of(p);
  const int32_t mult = p->output_multiplier, out_off = p->output_offset;
  const int shift = (int)p->output_shift;
  const int32_t lo = p->act_min, hi = p->act_max;
  TL_BROADCAST_LOOP(b, {
    const int32_t diff = TL_RESCALE(r, in1[i1], 1) - TL_RESCALE(r, in2[i2], 2);
    const int32_t raw = tl_mbqm_smaller_than_one(diff, mult, shift) + out_off;
    out[o] = (int16_t)tl_clamp_i32(raw, lo, hi);
  });
}

/* ---- MUL ---- */

/* reference_integer_ops::MulElementwise / BroadcastMul6DSlow (int16). The
 * product of two int16 values fits an int32 (at most 2^30). */
void tl_mul_s16(const tl_mul_params* p, const tl_broadcast* b, const int16_t* in1,
                const int16_t* in2, int16_t* out) {
  const int32_t off1 = p->input1_offset, off2 = p->input2_offset;
  const int32_t mult = p->output_multiplier, out_off = p->output_offset;
  const int left = p->output_shift > 0 ? (int)p->output_shift : 0;
  const int right = p->output_shift > 0 ? 0 : (int)-p->output_shift;
  const int32_t lo = p->act_min, hi = p->act_max;
  TL_BROADCAST_LOOP(b, {
    const int32_t v1 = off1 + in1[i1];
    const int32_t v2 = off2 + in2[i2];
    const int32_t raw = out_off + tl_mbqm_split(v1 * v2, mult, left, right);
    out[o] = (int16_t)tl_clamp_i32(raw, lo, hi);
  });
}

/* ---- LOGISTIC ---- */

/* sigmoid(i / 24) in 0.16 format (common.h's sigmoid_table_uint16); the
 * function is symmetric, so only |x| is looked up. */
static const uint16_t tl_sigmoid_table_u16[256] = {
    32768, 33451, 34133, 34813, 35493, 36169, 36843, 37513, 38180, 38841, 39498,
    40149, 40794, 41432, 42064, 42688, 43304, 43912, 44511, 45102, 45683, 46255,
    46817, 47369, 47911, 48443, 48964, 49475, 49975, 50464, 50942, 51409, 51865,
    52311, 52745, 53169, 53581, 53983, 54374, 54755, 55125, 55485, 55834, 56174,
    56503, 56823, 57133, 57433, 57724, 58007, 58280, 58544, 58800, 59048, 59288,
    59519, 59743, 59959, 60168, 60370, 60565, 60753, 60935, 61110, 61279, 61441,
    61599, 61750, 61896, 62036, 62172, 62302, 62428, 62549, 62666, 62778, 62886,
    62990, 63090, 63186, 63279, 63368, 63454, 63536, 63615, 63691, 63765, 63835,
    63903, 63968, 64030, 64090, 64148, 64204, 64257, 64308, 64357, 64405, 64450,
    64494, 64536, 64576, 64614, 64652, 64687, 64721, 64754, 64786, 64816, 64845,
    64873, 64900, 64926, 64950, 64974, 64997, 65019, 65039, 65060, 65079, 65097,
    65115, 65132, 65149, 65164, 65179, 65194, 65208, 65221, 65234, 65246, 65258,
    65269, 65280, 65291, 65301, 65310, 65319, 65328, 65337, 65345, 65352, 65360,
    65367, 65374, 65381, 65387, 65393, 65399, 65404, 65410, 65415, 65420, 65425,
    65429, 65433, 65438, 65442, 65445, 65449, 65453, 65456, 65459, 65462, 65465,
    65468, 65471, 65474, 65476, 65479, 65481, 65483, 65485, 65488, 65489, 65491,
    65493, 65495, 65497, 65498, 65500, 65501, 65503, 65504, 65505, 65507, 65508,
    65509, 65510, 65511, 65512, 65513, 65514, 65515, 65516, 65517, 65517, 65518,
    65519, 65520, 65520, 65521, 65522, 65522, 65523, 65523, 65524, 65524, 65525,
    65525, 65526, 65526, 65526, 65527, 65527, 65528, 65528, 65528, 65529, 65529,
    65529, 65529, 65530, 65530, 65530, 65530, 65531, 65531, 65531, 65531, 65531,
    65532, 65532, 65532, 65532, 65532, 65532, 65533, 65533, 65533, 65533, 65533,
    65533, 65533, 65533, 65534, 65534, 65534, 65534, 65534, 65534, 65534, 65534,
    65534, 65534, 65535};

/* reference_integer_ops::Logistic (int16): linear interpolation in the table
 * above; the output is in 2^-15 steps, zero point 0. */
void tl_logistic_s16(const tl_logistic_s16_params* p, int32_t size, const int16_t* in,
                     int16_t* out) {
  const int32_t multiplier = p->input_multiplier;
  const int left_shift = (int)p->input_left_shift;
  const int32_t round = left_shift > 0 ? (int32_t)1 << (left_shift - 1) : 0;
  for (int32_t i = 0; i < size; ++i) {
    /* The product fits an int32: the multiplier is below 2^16, and below 2^15
     * whenever there is a rounding term. */
    const int32_t input = ((int32_t)in[i] * multiplier + round) >> left_shift;
    const uint32_t abs_input = input < 0 ? (uint32_t)-input : (uint32_t)input;
    /* The input is in 1/(3 * 4096) steps, the table in 1/24: 2^9 steps per entry. */
    const uint32_t uh = abs_input >> 9;
    uint32_t result;
    if (uh >= 255) {
      result = (uint32_t)0x7FFF << 10; /* saturated */
    } else {
      const uint32_t ua = tl_sigmoid_table_u16[uh];
      const uint32_t ub = tl_sigmoid_table_u16[uh + 1];
      const uint32_t ut = abs_input & 0x1ff;
      result = (ua << 9) + ut * (ub - ua);
    }
    /* sigmoid(-x) = 1 - sigmoid(x); both rounded to 16 bits. */
    result = input >= 0 ? result + (1u << 9) : (1u << (16 + 9)) - result + (1u << 9) - 1u;
    out[i] = (int16_t)(result >> 10);
  }
}

/* ---- RSQRT ---- */

/* RsqrtEvalQuantized<int16_t> (elementwise.cc). */
int tl_rsqrt_s16(const tl_rsqrt_params* p, int32_t size, const int16_t* in, int16_t* out) {
  const int32_t kShift = 20; /* keeps the intermediate an integer */
  for (int32_t i = 0; i < size; ++i) {
    const int32_t value = (int32_t)in[i] - p->input_offset;
    if (value < 0) return TL_ERROR_RSQRT_NEGATIVE; /* TFLM fails Eval here */
    if (value == 0) {
      out[i] = INT16_MAX; /* any value near 0 maps to the largest output */
      continue;
    }
    int32_t inv_sqrt_multiplier;
    int inv_sqrt_shift;
    tl_get_inv_sqrt_multiplier_exp(value, -1, &inv_sqrt_multiplier, &inv_sqrt_shift);
    const int32_t data = tl_mbqm(1, inv_sqrt_multiplier, inv_sqrt_shift + kShift);
    const int32_t output = tl_mbqm(data, p->multiplier, p->shift - kShift) + p->output_offset;
    out[i] = (int16_t)tl_clamp_i32(output, INT16_MIN, INT16_MAX);
  }
  return TL_OK;
}

/* ---- QUANTIZE / DEQUANTIZE ---- */

/* reference_ops::Requantize for one input / output type pair. */
#define TL_S16_REQUANTIZE(p, size, in, out, out_type)                               \
  do {                                                                              \
    const int left_ = (p)->shift > 0 ? (int)(p)->shift : 0;                         \
    const int right_ = (p)->shift > 0 ? 0 : (int)-(p)->shift;                       \
    const int32_t in_zp_ = (p)->input_zero_point, out_zp_ = (p)->output_zero_point; \
    const int32_t mult_ = (p)->multiplier, lo_ = (p)->act_min, hi_ = (p)->act_max;  \
    for (int32_t i_ = 0; i_ < (size); ++i_) {                                       \
      const int32_t v_ = tl_mbqm_split((int32_t)(in)[i_] - in_zp_, mult_, left_, right_) + \
                         out_zp_;                                                   \
      (out)[i_] = (out_type)tl_clamp_i32(v_, lo_, hi_);                             \
    }                                                                               \
  } while (0)

void tl_requantize_s16(const tl_requant_params* p, int32_t size, const int16_t* in,
                       int16_t* out) {
  TL_S16_REQUANTIZE(p, size, in, out, int16_t);
}

void tl_requantize_s16_s8(const tl_requant_params* p, int32_t size, const int16_t* in,
                          int8_t* out) {
  TL_S16_REQUANTIZE(p, size, in, out, int8_t);
}

void tl_requantize_s8_s16(const tl_requant_params* p, int32_t size, const int8_t* in,
                          int16_t* out) {
  TL_S16_REQUANTIZE(p, size, in, out, int16_t);
}

/* reference_ops::AffineQuantize (float -> int16): divide in float, round half
 * away from zero. */
void tl_quantize_f32_s16(int32_t zero_point, float scale, int32_t size, const float* in,
                         int16_t* out) {
  for (int32_t i = 0; i < size; ++i) {
    const int32_t unclamped = (int32_t)roundf(in[i] / scale) + zero_point;
    out[i] = (int16_t)tl_clamp_i32(unclamped, INT16_MIN, INT16_MAX);
  }
}

/* reference_ops::Dequantize (int16 -> float): scale * (x - zp) in double. */
void tl_dequantize_s16_f32(int32_t zero_point, double scale, int32_t size, const int16_t* in,
                           float* out) {
  for (int32_t i = 0; i < size; ++i) {
    out[i] = (float)(scale * (double)((int32_t)in[i] - zero_point));
  }
}
