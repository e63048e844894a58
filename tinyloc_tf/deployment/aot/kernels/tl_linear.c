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
  const int32_t depth = p->accum_depth;
  for (int32_t b = 0; b < p->batches; ++b) {
    const int8_t* x = in + b * depth;
    for (int32_t oc = 0; oc < p->output_depth; ++oc) {
      const int8_t* w = filter + oc * depth;
      int32_t acc = 0;
      for (int32_t d = 0; d < depth; ++d) {
        acc += ((int32_t)w[d] + p->filter_offset) * ((int32_t)x[d] + p->input_offset);
      }
      if (bias) acc += bias[oc];
      const int32_t ch = p->per_channel ? oc : 0;
      out[b * p->output_depth + oc] =
          tl_requant_acc(acc, p->output_multiplier[ch], p->output_shift[ch],
                         p->output_offset, p->act_min, p->act_max);
    }
  }
}

void tl_conv2d_s8(const tl_conv_params* p, const int8_t* in, const int8_t* filter,
                  const int32_t* bias, int8_t* out) {
  const int32_t groups = p->input_depth / p->filter_input_depth;
  const int32_t filters_per_group = p->output_depth / groups;
  for (int32_t batch = 0; batch < p->batches; ++batch) {
    for (int32_t out_y = 0; out_y < p->output_height; ++out_y) {
      const int32_t in_y_origin = out_y * p->stride_height - p->pad_height;
      for (int32_t out_x = 0; out_x < p->output_width; ++out_x) {
        const int32_t in_x_origin = out_x * p->stride_width - p->pad_width;
        for (int32_t oc = 0; oc < p->output_depth; ++oc) {
          const int32_t group = oc / filters_per_group;
          int32_t acc = 0;
          for (int32_t fy = 0; fy < p->filter_height; ++fy) {
            const int32_t in_y = in_y_origin + p->dilation_height * fy;
            if (in_y < 0 || in_y >= p->input_height) continue; /* zero padding */
            for (int32_t fx = 0; fx < p->filter_width; ++fx) {
              const int32_t in_x = in_x_origin + p->dilation_width * fx;
              if (in_x < 0 || in_x >= p->input_width) continue;
              const int8_t* x =
                  in + ((batch * p->input_height + in_y) * p->input_width + in_x) *
                           p->input_depth +
                  group * p->filter_input_depth;
              const int8_t* w =
                  filter + ((oc * p->filter_height + fy) * p->filter_width + fx) *
                               p->filter_input_depth;
              for (int32_t ic = 0; ic < p->filter_input_depth; ++ic) {
                acc += (int32_t)w[ic] * ((int32_t)x[ic] + p->input_offset);
              }
            }
          }
          if (bias) acc += bias[oc];
          out[((batch * p->output_height + out_y) * p->output_width + out_x) *
                  p->output_depth +
              oc] = tl_requant_acc(acc, p->output_multiplier[oc], p->output_shift[oc],
                                   p->output_offset, p->act_min, p->act_max);
        }
      }
    }
  }
}

void tl_depthwise_conv2d_s8(const tl_dwconv_params* p, const int8_t* in,
                            const int8_t* filter, const int32_t* bias, int8_t* out) {
  for (int32_t batch = 0; batch < p->batches; ++batch) {
    for (int32_t out_y = 0; out_y < p->output_height; ++out_y) {
      const int32_t in_y_origin = out_y * p->stride_height - p->pad_height;
      for (int32_t out_x = 0; out_x < p->output_width; ++out_x) {
        const int32_t in_x_origin = out_x * p->stride_width - p->pad_width;
        for (int32_t ic = 0; ic < p->input_depth; ++ic) {
          for (int32_t m = 0; m < p->depth_multiplier; ++m) {
            const int32_t oc = m + ic * p->depth_multiplier;
            int32_t acc = 0;
            for (int32_t fy = 0; fy < p->filter_height; ++fy) {
              const int32_t in_y = in_y_origin + p->dilation_height * fy;
              if (in_y < 0 || in_y >= p->input_height) continue;
              for (int32_t fx = 0; fx < p->filter_width; ++fx) {
                const int32_t in_x = in_x_origin + p->dilation_width * fx;
                if (in_x < 0 || in_x >= p->input_width) continue;
                const int32_t x =
                    in[((batch * p->input_height + in_y) * p->input_width + in_x) *
                           p->input_depth +
                       ic];
                const int32_t w =
                    filter[(fy * p->filter_width + fx) * p->output_depth + oc];
                acc += w * (x + p->input_offset);
              }
            }
            if (bias) acc += bias[oc];
            out[((batch * p->output_height + out_y) * p->output_width + out_x) *
                    p->output_depth +
                oc] = tl_requant_acc(acc, p->output_multiplier[oc],
                                     p->output_shift[oc], p->output_offset,
                                     p->act_min, p->act_max);
          }
        }
      }
    }
  }
}

void tl_batch_matmul_s8(const tl_batch_matmul_params* p, const int8_t* lhs,
                        const int8_t* rhs, int8_t* out) {
  int8_t* o = out;
  for (int32_t b0 = 0; b0 < p->batch_shape[0]; ++b0) {
    for (int32_t b1 = 0; b1 < p->batch_shape[1]; ++b1) {
      for (int32_t b2 = 0; b2 < p->batch_shape[2]; ++b2) {
        const int8_t* l = lhs + b0 * p->lhs_batch_strides[0] +
                          b1 * p->lhs_batch_strides[1] + b2 * p->lhs_batch_strides[2];
        const int8_t* r = rhs + b0 * p->rhs_batch_strides[0] +
                          b1 * p->rhs_batch_strides[1] + b2 * p->rhs_batch_strides[2];
        for (int32_t i = 0; i < p->rows; ++i) {
          for (int32_t j = 0; j < p->cols; ++j) {
            int32_t acc = 0;
            for (int32_t k = 0; k < p->depth; ++k) {
              const int32_t lv = l[i * p->lhs_row_stride + k * p->lhs_depth_stride];
              const int32_t rv = r[k * p->rhs_depth_stride + j * p->rhs_col_stride];
              acc += (lv + p->lhs_offset) * (rv + p->rhs_offset);
            }
            *o++ = tl_requant_acc(acc, p->output_multiplier, p->output_shift,
                                  p->output_offset, p->act_min, p->act_max);
          }
        }
      }
    }
  }
}
