/*
 * tl_float.c - the float islands an "int8" graph may still contain when the
 * converter keeps an op in float (DEQUANTIZE -> float op -> QUANTIZE), with
 * the formulas of TFLite's reference kernels. Exactness against TFLM then
 * also depends on the C library's expf/logf/etc. being the same.
 */
#include <math.h>

#include "tl_internal.h"

void tl_dequantize_s8_f32(int32_t zero_point, double scale, int32_t size,
                          const int8_t* in, float* out) {
  for (int32_t i = 0; i < size; ++i) {
    out[i] = (float)(scale * (double)((int32_t)in[i] - zero_point));
  }
}

void tl_quantize_f32_s8(int32_t zero_point, float scale, int32_t size,
                        const float* in, int8_t* out) {
  for (int32_t i = 0; i < size; ++i) {
    const int32_t unclamped = (int32_t)roundf(in[i] / scale) + zero_point;
    out[i] = (int8_t)tl_clamp_i32(unclamped, INT8_MIN, INT8_MAX);
  }
}

static inline float tl_logistic_f32(float v) {
  /* TFLite's reference cut-offs. */
  if (v > 16.619047164916992188f) return 1.0f;
  if (v < -9.f) return expf(v);
  return 1.f / (1.f + expf(-v));
}

void tl_unary_f32(tl_unary_f32_op op, int32_t size, const float* in, float* out) {
  for (int32_t i = 0; i < size; ++i) {
    const float v = in[i];
    float r;
    switch (op) {
      case TL_UNARY_F32_ELU: r = v < 0.0f ? expm1f(v) : v; break;
      case TL_UNARY_F32_EXP: r = expf(v); break;
      case TL_UNARY_F32_LOG: r = logf(v); break;
      case TL_UNARY_F32_SQUARE: r = v * v; break;
      case TL_UNARY_F32_SQRT: r = sqrtf(v); break;
      case TL_UNARY_F32_RSQRT: r = 1.f / sqrtf(v); break;
      case TL_UNARY_F32_ABS: r = fabsf(v); break;
      case TL_UNARY_F32_NEG: r = -v; break;
      case TL_UNARY_F32_RELU: r = v < 0.0f ? 0.0f : v; break;
      case TL_UNARY_F32_TANH: r = tanhf(v); break;
      case TL_UNARY_F32_LOGISTIC: r = tl_logistic_f32(v); break;
      default: r = v; break;
    }
    out[i] = r;
  }
}

void tl_binary_f32(tl_binary_f32_op op, float act_min, float act_max,
                   const tl_broadcast* b, const float* in1, const float* in2,
                   float* out) {
  const int32_t nd = b->ndim;
  const int32_t inner = b->shape[nd - 1];
  const int32_t s1 = b->strides1[nd - 1];
  const int32_t s2 = b->strides2[nd - 1];
  const int32_t* strides[2] = {b->strides1, b->strides2};
  int32_t pos[TL_MAX_DIMS] = {0};
  int32_t off[2] = {0, 0};
  int32_t o = 0;
  do {
    for (int32_t j = 0; j < inner; ++j, ++o) {
      const float x = in1[off[0] + j * s1];
      const float y = in2[off[1] + j * s2];
      float r;
      switch (op) {
        case TL_BINARY_F32_ADD: r = x + y; break;
        case TL_BINARY_F32_SUB: r = x - y; break;
        case TL_BINARY_F32_MUL: r = x * y; break;
        case TL_BINARY_F32_DIV: r = x / y; break;
        case TL_BINARY_F32_MAXIMUM: r = x > y ? x : y; break;
        case TL_BINARY_F32_MINIMUM: r = x < y ? x : y; break;
        case TL_BINARY_F32_SQUARED_DIFFERENCE: r = (x - y) * (x - y); break;
        default: r = x; break;
      }
      /* ActivationFunctionWithMinMax: min(max(r, lo), hi). */
      r = r < act_min ? act_min : r;
      out[o] = r > act_max ? act_max : r;
    }
  } while (tl_odometer_next(nd, b->shape, pos, 2, strides, off));
}
