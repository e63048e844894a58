/*
 * tl_linear.c - int8 FULLY_CONNECTED, CONV_2D, DEPTHWISE_CONV_2D and
 * BATCH_MATMUL with 32-bit accumulators and per-channel requantization,
 * following TFLM's reference integer_ops kernels. Integer sums are exact and
 * wrap like TFLM's int32 accumulators, so the loop order is free.
 */
#include "tl_internal.h"

static inline int8_t tl_requant_acc(int32_t acc, int32_t multiplier, int32_t shift,
                                    int32_t output_offset, int32_t act_min,
                                    int32_t act_max) {
  int32_t v = tl_mbqm(acc, multiplier, shift) + output_offset;
  return (int8_t)tl_clamp_i32(v, act_min, act_max);
}

void tl_fully_connected_s8(const tl_fc_params* p, const int8_t* in,
                           const int8_t* filter, const int32_t* bias, int8_t* out) {
  /* Locals: int8 stores may alias *p, which would force reloads. */
  const int32_t depth = p->accum_depth, units = p->output_depth, batches = p->batches;
  const int32_t in_off = p->input_offset, w_off = p->filter_offset;
  const int32_t out_off = p->output_offset, lo = p->act_min, hi = p->act_max;
  const int32_t per_channel = p->per_channel;
  const int32_t* mults = p->output_multiplier;
  const int32_t* shifts = p->output_shift;
  for (int32_t b = 0; b < batches; ++b) {
    const int8_t* x = in + b * depth;
    for (int32_t oc = 0; oc < units; ++oc) {
      const int8_t* w = filter + oc * depth;
      int32_t acc = 0;
      if (w_off == 0 && in_off == 0) { /* offsets folded into the bias */
        for (int32_t d = 0; d < depth; ++d) acc += (int32_t)w[d] * (int32_t)x[d];
      } else if (w_off == 0) {
        for (int32_t d = 0; d < depth; ++d) acc += (int32_t)w[d] * ((int32_t)x[d] + in_off);
      } else {
        for (int32_t d = 0; d < depth; ++d) {
          acc += ((int32_t)w[d] + w_off) * ((int32_t)x[d] + in_off);
        }
      }
      if (bias) acc += bias[oc];
      const int32_t ch = per_channel ? oc : 0;
      out[b * units + oc] = tl_requant_acc(acc, mults[ch], shifts[ch], out_off, lo, hi);
    }
  }
}

void tl_conv2d_s8(const tl_conv_params* p, const int8_t* in, const int8_t* filter,
                  const int32_t* bias, int8_t* out) {
  const int32_t ih = p->input_height, iw = p->input_width, ic_all = p->input_depth;
  const int32_t fh = p->filter_height, fw = p->filter_width, fic = p->filter_input_depth;
  const int32_t oh = p->output_height, ow = p->output_width, oc_all = p->output_depth;
  const int32_t sh = p->stride_height, sw = p->stride_width;
  const int32_t dh = p->dilation_height, dw = p->dilation_width;
  const int32_t in_off = p->input_offset, out_off = p->output_offset;
  const int32_t lo = p->act_min, hi = p->act_max;
  const int32_t* mults = p->output_multiplier;
  const int32_t* shifts = p->output_shift;
  const int32_t groups = ic_all / fic;
  const int32_t filters_per_group = oc_all / groups;
  for (int32_t batch = 0; batch < p->batches; ++batch) {
    for (int32_t out_y = 0; out_y < oh; ++out_y) {
      const int32_t in_y_origin = out_y * sh - p->pad_height;
      for (int32_t out_x = 0; out_x < ow; ++out_x) {
        const int32_t in_x_origin = out_x * sw - p->pad_width;
        int8_t* o = out + ((batch * oh + out_y) * ow + out_x) * oc_all;
        for (int32_t oc = 0; oc < oc_all; ++oc) {
          const int32_t group = oc / filters_per_group;
          int32_t acc = 0;
          for (int32_t fy = 0; fy < fh; ++fy) {
            const int32_t in_y = in_y_origin + dh * fy;
            if (in_y < 0 || in_y >= ih) continue; /* zero padding: tap skipped */
            for (int32_t fx = 0; fx < fw; ++fx) {
              const int32_t in_x = in_x_origin + dw * fx;
              if (in_x < 0 || in_x >= iw) continue;
              const int8_t* x = in + ((batch * ih + in_y) * iw + in_x) * ic_all + group * fic;
              const int8_t* w = filter + ((oc * fh + fy) * fw + fx) * fic;
              for (int32_t ic = 0; ic < fic; ++ic) {
                acc += (int32_t)w[ic] * ((int32_t)x[ic] + in_off);
              }
            }
          }
          if (bias) acc += bias[oc];
          o[oc] = tl_requant_acc(acc, mults[oc], shifts[oc], out_off, lo, hi);
        }
      }
    }
  }
}

void tl_depthwise_conv2d_s8(const tl_dwconv_params* p, const int8_t* in,
                            const int8_t* filter, const int32_t* bias, int8_t* out) {
  const int32_t ih = p->input_height, iw = p->input_width, ic_all = p->input_depth;
  const int32_t fh = p->filter_height, fw = p->filter_width, mult_depth = p->depth_multiplier;
  const int32_t oh = p->output_height, ow = p->output_width, oc_all = p->output_depth;
  const int32_t sh = p->stride_height, sw = p->stride_width;
  const int32_t dh = p->dilation_height, dw = p->dilation_width;
  const int32_t in_off = p->input_offset, out_off = p->output_offset;
  const int32_t lo = p->act_min, hi = p->act_max;
  const int32_t* mults = p->output_multiplier;
  const int32_t* shifts = p->output_shift;
  for (int32_t batch = 0; batch < p->batches; ++batch) {
    for (int32_t out_y = 0; out_y < oh; ++out_y) {
      const int32_t in_y_origin = out_y * sh - p->pad_height;
      for (int32_t out_x = 0; out_x < ow; ++out_x) {
        const int32_t in_x_origin = out_x * sw - p->pad_width;
        int8_t* o = out + ((batch * oh + out_y) * ow + out_x) * oc_all;
        for (int32_t ic = 0; ic < ic_all; ++ic) {
          for (int32_t m = 0; m < mult_depth; ++m) {
            const int32_t oc = m + ic * mult_depth;
            int32_t acc = 0;
            for (int32_t fy = 0; fy < fh; ++fy) {
              const int32_t in_y = in_y_origin + dh * fy;
              if (in_y < 0 || in_y >= ih) continue;
              for (int32_t fx = 0; fx < fw; ++fx) {
                const int32_t in_x = in_x_origin + dw * fx;
                if (in_x < 0 || in_x >= iw) continue;
                const int32_t x = in[((batch * ih + in_y) * iw + in_x) * ic_all + ic];
                const int32_t w = filter[(fy * fw + fx) * oc_all + oc];
                acc += w * (x + in_off);
              }
            }
            if (bias) acc += bias[oc];
            o[oc] = tl_requant_acc(acc, mults[oc], shifts[oc], out_off, lo, hi);
          }
        }
      }
    }
  }
}

void tl_batch_matmul_s8(const tl_batch_matmul_params* p, const int8_t* lhs,
                        const int8_t* rhs, int8_t* out) {
  const int32_t rows = p->rows, cols = p->cols, depth = p->depth;
  const int32_t lrs = p->lhs_row_stride, lds = p->lhs_depth_stride;
  const int32_t rds = p->rhs_depth_stride, rcs = p->rhs_col_stride;
  const int32_t loff = p->lhs_offset, roff = p->rhs_offset;
  const int32_t mult = p->output_multiplier, shift = p->output_shift;
  const int32_t out_off = p->output_offset, lo = p->act_min, hi = p->act_max;
  int8_t* o = out;
  for (int32_t b0 = 0; b0 < p->batch_shape[0]; ++b0) {
    for (int32_t b1 = 0; b1 < p->batch_shape[1]; ++b1) {
      for (int32_t b2 = 0; b2 < p->batch_shape[2]; ++b2) {
        const int8_t* l = lhs + b0 * p->lhs_batch_strides[0] +
                          b1 * p->lhs_batch_strides[1] + b2 * p->lhs_batch_strides[2];
        const int8_t* r = rhs + b0 * p->rhs_batch_strides[0] +
                          b1 * p->rhs_batch_strides[1] + b2 * p->rhs_batch_strides[2];
        for (int32_t i = 0; i < rows; ++i) {
          for (int32_t j = 0; j < cols; ++j) {
            const int8_t* lp = l + i * lrs;
            const int8_t* rp = r + j * rcs;
            int32_t acc = 0;
            for (int32_t k = 0; k < depth; ++k) {
              acc += ((int32_t)lp[k * lds] + loff) * ((int32_t)rp[k * rds] + roff);
            }
            *o++ = tl_requant_acc(acc, mult, shift, out_off, lo, hi);
          }
        }
      }
    }
  }
}
