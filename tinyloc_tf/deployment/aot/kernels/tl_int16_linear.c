/*
 * tl_int16_linear.c - int16x8 FULLY_CONNECTED, DEPTHWISE_CONV_2D, BATCH_MATMUL and
 * MEAN / SUM, following TFLM's reference kernels for int16 activations.
 *
 * TFLM accumulates int16 x int8 (and int16 x int16) products in int64 and requantizes
 * with the int64 overload of MultiplyByQuantizedMultiplier, which rounds once with a
 * 16-bit multiplier, not like the int32 overload. Integer sums are exact, so the loop
 * order is free; additions that TFLM lets wrap are done on unsigned types here so that
 * they wrap the same way without undefined behaviour.
 */
#include "tl_internal.h"

/* MultiplyByQuantizedMultiplier(int64_t x, int32_t multiplier, int shift) of
 * tensorflow/lite/kernels/internal/common.cc (the default, double-rounding build):
 * the Q31 multiplier is rounded to Q15 and applied with one rounding shift. The
 * compiler guarantees -31 <= shift <= 14, so the shift below is 1..46. */
TL_HOT int32_t tl_mbqm_s64(int64_t x, int32_t multiplier, int shift) {
  const int32_t reduced_multiplier =
      multiplier < 0x7FFF0000 ? ((multiplier + (1 << 15)) >> 16) : 0x7FFF;
  const int total_shift = 15 - shift;
  const uint64_t product = (uint64_t)x * (uint64_t)(int64_t)reduced_multiplier +
                           ((uint64_t)1 << (total_shift - 1));
  /* TFLM keeps the low 32 bits of the shifted value. */
  return (int32_t)(uint32_t)(uint64_t)((int64_t)product >> total_shift);
}

TL_HOT int32_t tl_wrapping_add_i32(int32_t a, int32_t b) {
  return (int32_t)((uint32_t)a + (uint32_t)b);
}

TL_HOT int16_t tl_clamp_s16(int32_t v, int32_t lo, int32_t hi) {
  return (int16_t)tl_clamp_i32(v, lo, hi);
}

/* reference_integer_ops::FullyConnected / FullyConnectedPerChannel
 * <int16_t, int8_t, int16_t, int64_t>. Products are int32, as in TFLM; they fit. */
void tl_fully_connected_s16(const tl_fc_params* p, const int16_t* in, const int8_t* filter,
                            const int64_t* bias, int16_t* out) {
  const int32_t depth = p->accum_depth, units = p->output_depth, batches = p->batches;
  const int32_t in_off = p->input_offset, w_off = p->filter_offset;
  const int32_t out_off = p->output_offset, lo = p->act_min, hi = p->act_max;
  const int32_t per_channel = p->per_channel;
  const int32_t* mults = p->output_multiplier;
  const int32_t* shifts = p->output_shift;
  for (int32_t b = 0; b < batches; ++b) {
    const int16_t* x = in + b * depth;
    for (int32_t oc = 0; oc < units; ++oc) {
      const int8_t* w = filter + oc * depth;
      int64_t acc = 0;
      for (int32_t d = 0; d < depth; ++d) {
        acc += ((int32_t)w[d] + w_off) * ((int32_t)x[d] + in_off);
      }
      if (bias) acc = (int64_t)((uint64_t)acc + (uint64_t)bias[oc]);
      const int32_t ch = per_channel ? oc : 0;
      const int32_t v = tl_wrapping_add_i32(tl_mbqm_s64(acc, mults[ch], shifts[ch]), out_off);
      out[b * units + oc] = tl_clamp_s16(v, lo, hi);
    }
  }
}

/* The same with BiasType int32_t: TFLM's accumulator is then int32 and wraps. */
void tl_fully_connected_s16_acc32(const tl_fc_params* p, const int16_t* in,
                                  const int8_t* filter, const int32_t* bias, int16_t* out) {
  const int32_t depth = p->accum_depth, units = p->output_depth, batches = p->batches;
  const int32_t in_off = p->input_offset, w_off = p->filter_offset;
  const int32_t out_off = p->output_offset, lo = p->act_min, hi = p->act_max;
  const int32_t per_channel = p->per_channel;
  const int32_t* mults = p->output_multiplier;
  const int32_t* shifts = p->output_shift;
  for (int32_t b = 0; b < batches; ++b) {
    const int16_t* x = in + b * depth;
    for (int32_t oc = 0; oc < units; ++oc) {
      const int8_t* w = filter + oc * depth;
      uint32_t acc = 0;
      for (int32_t d = 0; d < depth; ++d) {
        acc += (uint32_t)(((int32_t)w[d] + w_off) * ((int32_t)x[d] + in_off));
      }
      if (bias) acc += (uint32_t)bias[oc];
      const int32_t ch = per_channel ? oc : 0;
      const int32_t v = tl_wrapping_add_i32(tl_mbqm((int32_t)acc, mults[ch], shifts[ch]), out_off);
      out[b * units + oc] = tl_clamp_s16(v, lo, hi);
    }
  }
}

/* reference_integer_ops::DepthwiseConvPerChannel for int16 input, int8 filter and
 * int64 bias. That overload uses neither input_offset nor output_offset. */
void tl_depthwise_conv2d_s16(const tl_dwconv_params* p, const int16_t* in,
                             const int8_t* filter, const int64_t* bias, int16_t* out) {
  const int32_t ih = p->input_height, iw = p->input_width, ic_all = p->input_depth;
  const int32_t fh = p->filter_height, fw = p->filter_width, mult_depth = p->depth_multiplier;
  const int32_t oh = p->output_height, ow = p->output_width, oc_all = p->output_depth;
  const int32_t sh = p->stride_height, sw = p->stride_width;
  const int32_t dh = p->dilation_height, dw = p->dilation_width;
  const int32_t lo = p->act_min, hi = p->act_max;
  const int32_t* mults = p->output_multiplier;
  const int32_t* shifts = p->output_shift;
  for (int32_t batch = 0; batch < p->batches; ++batch) {
    for (int32_t out_y = 0; out_y < oh; ++out_y) {
      const int32_t in_y_origin = out_y * sh - p->pad_height;
      for (int32_t out_x = 0; out_x < ow; ++out_x) {
        const int32_t in_x_origin = out_x * sw - p->pad_width;
        int16_t* o = out + ((batch * oh + out_y) * ow + out_x) * oc_all;
        for (int32_t ic = 0; ic < ic_all; ++ic) {
          for (int32_t m = 0; m < mult_depth; ++m) {
            const int32_t oc = m + ic * mult_depth;
            int64_t acc = 0;
            for (int32_t fy = 0; fy < fh; ++fy) {
              const int32_t in_y = in_y_origin + dh * fy;
              if (in_y < 0 || in_y >= ih) continue; /* zero padding: tap skipped */
              for (int32_t fx = 0; fx < fw; ++fx) {
                const int32_t in_x = in_x_origin + dw * fx;
                if (in_x < 0 || in_x >= iw) continue;
                const int64_t x = in[((batch * ih + in_y) * iw + in_x) * ic_all + ic];
                const int64_t w = filter[(fy * fw + fx) * oc_all + oc];
                acc += w * x;
              }
            }
            if (bias) acc = (int64_t)((uint64_t)acc + (uint64_t)bias[oc]);
            o[oc] = tl_clamp_s16(tl_mbqm_s64(acc, mults[oc], shifts[oc]), lo, hi);
          }
        }
      }
    }
  }
}

/* reference_ops::BatchMatMul<int16_t, int64_t> (TFLM's EvalInt16). */
void tl_batch_matmul_s16(const tl_batch_matmul_params* p, const int16_t* lhs,
                         const int16_t* rhs, int16_t* out) {
  const int32_t rows = p->rows, cols = p->cols, depth = p->depth;
  const int32_t lrs = p->lhs_row_stride, lds = p->lhs_depth_stride;
  const int32_t rds = p->rhs_depth_stride, rcs = p->rhs_col_stride;
  const int64_t loff = p->lhs_offset, roff = p->rhs_offset;
  const int32_t mult = p->output_multiplier, shift = p->output_shift;
  const int32_t out_off = p->output_offset, lo = p->act_min, hi = p->act_max;
  int16_t* o = out;
  for (int32_t b0 = 0; b0 < p->batch_shape[0]; ++b0) {
    for (int32_t b1 = 0; b1 < p->batch_shape[1]; ++b1) {
      for (int32_t b2 = 0; b2 < p->batch_shape[2]; ++b2) {
        const int16_t* l = lhs + b0 * p->lhs_batch_strides[0] +
                           b1 * p->lhs_batch_strides[1] + b2 * p->lhs_batch_strides[2];
        const int16_t* r = rhs + b0 * p->rhs_batch_strides[0] +
                           b1 * p->rhs_batch_strides[1] + b2 * p->rhs_batch_strides[2];
        for (int32_t i = 0; i < rows; ++i) {
          for (int32_t j = 0; j < cols; ++j) {
            const int16_t* lp = l + i * lrs;
            const int16_t* rp = r + j * rcs;
            int64_t acc = 0;
            for (int32_t k = 0; k < depth; ++k) {
              acc += ((int64_t)lp[k * lds] + loff) * ((int64_t)rp[k * rds] + roff);
            }
            const int32_t v = tl_wrapping_add_i32(tl_mbqm_s64(acc, mult, shift), out_off);
            *o++ = tl_clamp_s16(v, lo, hi);
          }
        }
      }
    }
  }
}

/* reference_ops::QuantizedMeanOrSum<int16_t, int32_t> (TFLM's EvalMeanHelper and
 * EvalSumHelper for int16). The sums are int32, as in TFLM, and wrap like them. */
void tl_reduce_sum_s16(const tl_sum_params* p, const tl_reduce_shape* s, const int16_t* in,
                       int16_t* out) {
  const int32_t rnd = s->reduced_ndim;
  const int32_t inner = s->reduced_shape[rnd - 1];
  const int32_t inner_stride = s->reduced_strides[rnd - 1];
  const int32_t* reduced_strides[1] = {s->reduced_strides};
  const uint32_t zero_point_sum = (uint32_t)p->input_zero_point * (uint32_t)p->num_elements;
  int32_t outputs = 1;
  for (int32_t d = 0; d < s->kept_ndim; ++d) outputs *= s->kept_shape[d];
  int32_t kept_pos[TL_MAX_DIMS] = {0};
  int32_t base = 0;
  for (int32_t o = 0; o < outputs; ++o) {
    uint32_t sum = 0;
    int32_t reduced_pos[TL_MAX_DIMS] = {0};
    int32_t reduced_off[1] = {0};
    do {
      const int16_t* x = in + base + reduced_off[0];
      for (int32_t j = 0; j < inner; ++j) sum += (uint32_t)(int32_t)x[j * inner_stride];
    } while (tl_odometer_next(rnd, s->reduced_shape, reduced_pos, 1, reduced_strides,
                              reduced_off));
    const int32_t shifted_sum = (int32_t)(sum - zero_point_sum);
    const int32_t v = tl_mbqm(shifted_sum, p->multiplier, p->shift) + p->output_zero_point;
    out[o] = tl_clamp_s16(v, INT16_MIN, INT16_MAX);
    /* next output: step the kept axes like an odometer */
    for (int32_t d = s->kept_ndim - 1; d >= 0; --d) {
      base += s->kept_strides[d];
      if (++kept_pos[d] < s->kept_shape[d]) break;
      base -= s->kept_strides[d] * s->kept_shape[d];
      kept_pos[d] = 0;
    }
  }
}
