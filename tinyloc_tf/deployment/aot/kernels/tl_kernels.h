/*
 * tl_kernels.h - plain C99 int8 (and int16x8) kernels called by code that `tinyloc compile`
 * generates from a .tflite model.
 *
 * Each kernel follows TensorFlow Lite Micro's reference kernel for the same
 * operator bit for bit: the compiler (tinyloc_tf/deployment/aot) computes the
 * same fixed-point multipliers, shifts, ranges and lookup tables that TFLM's
 * Prepare() would, and passes them in a const parameter struct, so no kernel
 * allocates, parses or does floating-point set-up at run time.
 *
 * Tensors are dense, row-major, and described by the compiler: shapes are
 * folded into the parameter structs, data pointers point into the arena, into
 * const weights, or at the caller's input and output buffers.
 */
#ifndef TL_KERNELS_H_
#define TL_KERNELS_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TL_MAX_DIMS 6

/* Status codes returned by kernels that can fail on data (like TFLM's Eval). */
#define TL_OK 0
#define TL_ERROR_RSQRT_NEGATIVE 1

/* Element-wise binary op over broadcast inputs. The output is dense with
 * `shape`; element (i0..in) of input k sits at sum(ij * strides_k[j])
 * (stride 0 along a broadcast axis). Axes are merged by the compiler. */
typedef struct {
  int32_t ndim;
  int32_t shape[TL_MAX_DIMS];
  int32_t strides1[TL_MAX_DIMS];
  int32_t strides2[TL_MAX_DIMS];
} tl_broadcast;

/* ADD / SUB: TFLM's "general rescaling" path (left_shift 20 for int8). */
typedef struct {
  int32_t input1_offset, input2_offset, output_offset;
  int32_t input1_multiplier, input2_multiplier, output_multiplier;
  int32_t input1_shift, input2_shift, output_shift;
  int32_t left_shift;
  int32_t act_min, act_max;
} tl_add_params;

/* MUL: one multiplier for in1*in2 -> out. */
typedef struct {
  int32_t input1_offset, input2_offset, output_offset;
  int32_t output_multiplier, output_shift;
  int32_t act_min, act_max;
} tl_mul_params;

/* Requantize (QUANTIZE int8->int8, RELU): out = clamp(zp_out + M*(in - zp_in)). */
typedef struct {
  int32_t input_zero_point, output_zero_point;
  int32_t multiplier, shift;
  int32_t act_min, act_max;
} tl_requant_params;

/* LOGISTIC / TANH int8 (gemmlowp fixed-point, input as Q4). */
typedef struct {
  int32_t input_zero_point;
  int32_t input_range_radius;
  int32_t input_multiplier;
  int32_t input_left_shift;
} tl_sigmoid_params;

/* SOFTMAX int8 -> int8 over the last axis. exp_table (optional, may be
 * NULL) holds exp() in Q0 for the 256 possible differences to the row max,
 * indexed by max - x; without it the kernel computes them. */
typedef struct {
  int32_t outer_size, depth;
  int32_t input_multiplier, input_left_shift;
  int32_t diff_min;
  const int32_t* exp_table;
} tl_softmax_params;

/* RSQRT int8. */
typedef struct {
  int32_t input_offset, output_offset;
  int32_t multiplier, shift;
} tl_rsqrt_params;

/* FULLY_CONNECTED: out[b, o] = sum_d (w[o, d] + w_off) * (x[b, d] + x_off).
 * Per-tensor models pass arrays of length 1 with per_channel = 0. */
typedef struct {
  int32_t batches, output_depth, accum_depth;
  int32_t input_offset, filter_offset, output_offset;
  int32_t per_channel;
  const int32_t* output_multiplier;
  const int32_t* output_shift;
  int32_t act_min, act_max;
} tl_fc_params;

/* CONV_2D (NHWC input, OHWI filter, per-channel requantization). */
typedef struct {
  int32_t batches, input_height, input_width, input_depth;
  int32_t filter_height, filter_width, filter_input_depth;
  int32_t output_height, output_width, output_depth;
  int32_t stride_height, stride_width;
  int32_t dilation_height, dilation_width;
  int32_t pad_height, pad_width;
  int32_t input_offset, output_offset;
  const int32_t* output_multiplier;
  const int32_t* output_shift;
  int32_t act_min, act_max;
} tl_conv_params;

/* DEPTHWISE_CONV_2D (filter 1HWO, out channel = in channel * mult + m). */
typedef struct {
  int32_t batches, input_height, input_width, input_depth;
  int32_t filter_height, filter_width, depth_multiplier;
  int32_t output_height, output_width, output_depth;
  int32_t stride_height, stride_width;
  int32_t dilation_height, dilation_width;
  int32_t pad_height, pad_width;
  int32_t input_offset, output_offset;
  const int32_t* output_multiplier;
  const int32_t* output_shift;
  int32_t act_min, act_max;
} tl_dwconv_params;

/* BATCH_MATMUL: out[b, i, j] = sum_k (lhs[b,i,k] + lhs_off) * (rhs[b,k,j] + rhs_off).
 * Up to three batch axes, each with its own lhs/rhs stride (0 = broadcast);
 * adj_x / adj_y are folded into the row/column/depth strides. */
typedef struct {
  int32_t batch_shape[3];
  int32_t lhs_batch_strides[3];
  int32_t rhs_batch_strides[3];
  int32_t rows, cols, depth;
  int32_t lhs_row_stride, lhs_depth_stride;
  int32_t rhs_depth_stride, rhs_col_stride;
  int32_t lhs_offset, rhs_offset, output_offset;
  int32_t output_multiplier, output_shift;
  int32_t act_min, act_max;
} tl_batch_matmul_params;

/* Reductions: the input is viewed as kept axes x reduced axes. The output is
 * dense over the kept axes. */
typedef struct {
  int32_t kept_ndim;
  int32_t kept_shape[TL_MAX_DIMS];
  int32_t kept_strides[TL_MAX_DIMS];
  int32_t reduced_ndim;
  int32_t reduced_shape[TL_MAX_DIMS];
  int32_t reduced_strides[TL_MAX_DIMS];
} tl_reduce_shape;

typedef struct {
  int32_t input_zero_point, output_zero_point;
  int32_t num_elements; /* elements per reduced group */
  int32_t multiplier, shift;
} tl_sum_params;

/* Strided N-d copy: dst[i0..in] (own strides) = src[sum(ij * src_strides[j])]. */
typedef struct {
  int32_t ndim;
  int32_t shape[TL_MAX_DIMS];
  int32_t src_strides[TL_MAX_DIMS];
  int32_t dst_strides[TL_MAX_DIMS];
} tl_copy_desc;

/* ---- int8 arithmetic ---- */
void tl_add_s8(const tl_add_params* p, const tl_broadcast* b, const int8_t* in1,
               const int8_t* in2, int8_t* out);
void tl_sub_s8(const tl_add_params* p, const tl_broadcast* b, const int8_t* in1,
               const int8_t* in2, int8_t* out);
void tl_squared_difference_s8(const tl_add_params* p, const tl_broadcast* b,
                              const int8_t* in1, const int8_t* in2, int8_t* out);
void tl_mul_s8(const tl_mul_params* p, const tl_broadcast* b, const int8_t* in1,
               const int8_t* in2, int8_t* out);
void tl_maximum_s8(const tl_broadcast* b, const int8_t* in1, const int8_t* in2,
                   int8_t* out);
void tl_minimum_s8(const tl_broadcast* b, const int8_t* in1, const int8_t* in2,
                   int8_t* out);

/* ---- int8 activations ---- */
void tl_requantize_s8(const tl_requant_params* p, int32_t size, const int8_t* in,
                      int8_t* out);
void tl_logistic_s8(const tl_sigmoid_params* p, int32_t size, const int8_t* in,
                    int8_t* out);
void tl_tanh_s8(const tl_sigmoid_params* p, int32_t size, const int8_t* in,
                int8_t* out);
void tl_lut_s8(const int8_t* table, int32_t size, const int8_t* in, int8_t* out);
void tl_clamp_s8(int8_t lo, int8_t hi, int32_t size, const int8_t* in, int8_t* out);
int tl_rsqrt_s8(const tl_rsqrt_params* p, int32_t size, const int8_t* in, int8_t* out);
void tl_l2norm_s8(int32_t outer_size, int32_t depth, int32_t input_zero_point, const int8_t* in,
                  int8_t* out);
void tl_softmax_s8(const tl_softmax_params* p, const int8_t* in, int8_t* out);

/* ---- int8 linear algebra ---- */
void tl_fully_connected_s8(const tl_fc_params* p, const int8_t* in,
                           const int8_t* filter, const int32_t* bias, int8_t* out);
void tl_conv2d_s8(const tl_conv_params* p, const int8_t* in, const int8_t* filter,
                  const int32_t* bias, int8_t* out);
void tl_depthwise_conv2d_s8(const tl_dwconv_params* p, const int8_t* in,
                            const int8_t* filter, const int32_t* bias, int8_t* out);
void tl_batch_matmul_s8(const tl_batch_matmul_params* p, const int8_t* lhs,
                        const int8_t* rhs, int8_t* out);

/* ---- int8 reductions ---- */
void tl_reduce_sum_s8(const tl_sum_params* p, const tl_reduce_shape* s,
                      const int8_t* in, int8_t* out);
void tl_reduce_max_s8(const tl_reduce_shape* s, const int8_t* in, int8_t* out);
void tl_reduce_min_s8(const tl_reduce_shape* s, const int8_t* in, int8_t* out);

/* ---- data movement (any element size) ---- */
void tl_copy_nd(const tl_copy_desc* d, size_t elem_size, const void* src, void* dst);
void tl_fill(size_t elem_size, int32_t count, const void* value, void* dst);

/* ---- float islands TFLM also runs (DEQUANTIZE -> float op -> QUANTIZE) ---- */
void tl_dequantize_s8_f32(int32_t zero_point, double scale, int32_t size,
                          const int8_t* in, float* out);
void tl_quantize_f32_s8(int32_t zero_point, float scale, int32_t size,
                        const float* in, int8_t* out);

typedef enum {
  TL_UNARY_F32_ELU = 0,
  TL_UNARY_F32_EXP,
  TL_UNARY_F32_LOG,
  TL_UNARY_F32_SQUARE,
  TL_UNARY_F32_SQRT,
  TL_UNARY_F32_RSQRT,
  TL_UNARY_F32_ABS,
  TL_UNARY_F32_NEG,
  TL_UNARY_F32_RELU,
  TL_UNARY_F32_TANH,
  TL_UNARY_F32_LOGISTIC
} tl_unary_f32_op;
void tl_unary_f32(tl_unary_f32_op op, int32_t size, const float* in, float* out);

typedef enum {
  TL_BINARY_F32_ADD = 0,
  TL_BINARY_F32_SUB,
  TL_BINARY_F32_MUL,
  TL_BINARY_F32_DIV,
  TL_BINARY_F32_MAXIMUM,
  TL_BINARY_F32_MINIMUM,
  TL_BINARY_F32_SQUARED_DIFFERENCE
} tl_binary_f32_op;
void tl_binary_f32(tl_binary_f32_op op, float act_min, float act_max,
                   const tl_broadcast* b, const float* in1, const float* in2,
                   float* out);

/* int16x8 models: TFLM's int16 kernels (their own arithmetic, not the int8 one). */
#include "tl_int16_elementwise.h"
#include "tl_int16_linear.h"

#ifdef __cplusplus
}
#endif

#endif /* TL_KERNELS_H_ */
