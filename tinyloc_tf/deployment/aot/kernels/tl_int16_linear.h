/* tl_int16_linear.h - int16x8 kernels (int16 activations, int8 weights): linear operators.
 *
 * These take the int8 kernels' parameter structs (tl_fc_params, tl_dwconv_params,
 * tl_batch_matmul_params, tl_sum_params with tl_reduce_shape): the geometry and the
 * Prepare()-time requantization are the same, only the element types, the accumulator
 * width and the int16 clamping range differ. */
#ifndef TL_INT16_LINEAR_H_
#define TL_INT16_LINEAR_H_

#include "tl_kernels.h"

/* FULLY_CONNECTED with int64 bias and accumulator (TFLM's default for int16x8). */
void tl_fully_connected_s16(const tl_fc_params* p, const int16_t* in, const int8_t* filter,
                            const int64_t* bias, int16_t* out);
/* FULLY_CONNECTED with int32 bias and a wrapping int32 accumulator (a model whose bias
 * is int32, or that has no bias and asks for quantized_bias_type INT32). */
void tl_fully_connected_s16_acc32(const tl_fc_params* p, const int16_t* in,
                                  const int8_t* filter, const int32_t* bias, int16_t* out);

/* DEPTHWISE_CONV_2D, int64 bias; TFLM's int16 kernel applies no input or output offset. */
void tl_depthwise_conv2d_s16(const tl_dwconv_params* p, const int16_t* in,
                             const int8_t* filter, const int64_t* bias, int16_t* out);

/* BATCH_MATMUL int16 x int16 -> int16 (zero points are 0, as TFLM requires). */
void tl_batch_matmul_s16(const tl_batch_matmul_params* p, const int16_t* lhs,
                         const int16_t* rhs, int16_t* out);

/* MEAN / SUM over int16 (int32 sums; MEAN folds 1/n into the multiplier). */
void tl_reduce_sum_s16(const tl_sum_params* p, const tl_reduce_shape* s, const int16_t* in,
                       int16_t* out);

#endif /* TL_INT16_LINEAR_H_ */
