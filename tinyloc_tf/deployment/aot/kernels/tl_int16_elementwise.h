/* tl_int16_elementwise.h - int16x8 kernels (int16 activations): element-wise operators. */
#ifndef TL_INT16_ELEMENTWISE_H_
#define TL_INT16_ELEMENTWISE_H_

#include "tl_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* LOGISTIC int16: the input is rescaled to 1/(3 * 4096) steps by
 * (x * input_multiplier + round) >> input_left_shift before the table lookup.
 * The compiler resolves TFLM's power-of-two case (multiplier 0) to
 * multiplier 3, shift 0. */
typedef struct {
  int32_t input_multiplier;
  int32_t input_left_shift;
} tl_logistic_s16_params;

/* ADD / SUB with int16 operands: tl_add_params with left_shift 15. */
void tl_add_s16(const tl_add_params* p, const tl_broadcast* b, const int16_t* in1,
                const int16_t* in2, int16_t* out);
void tl_sub_s16(const tl_add_params* p, const tl_broadcast* b, const int16_t* in1,
                const int16_t* in2, int16_t* out);
/* MUL int16 x int16 -> int16 (zero points 0, as TFLM requires). */
void tl_mul_s16(const tl_mul_params* p, const tl_broadcast* b, const int16_t* in1,
                const int16_t* in2, int16_t* out);

void tl_logistic_s16(const tl_logistic_s16_params* p, int32_t size, const int16_t* in,
                     int16_t* out);
/* Returns TL_ERROR_RSQRT_NEGATIVE on an input below the zero point. */
int tl_rsqrt_s16(const tl_rsqrt_params* p, int32_t size, const int16_t* in, int16_t* out);

/* QUANTIZE between integer types: out = clamp(zp_out + M * (in - zp_in)). */
void tl_requantize_s16(const tl_requant_params* p, int32_t size, const int16_t* in,
                       int16_t* out);
void tl_requantize_s16_s8(const tl_requant_params* p, int32_t size, const int16_t* in,
                          int8_t* out);
void tl_requantize_s8_s16(const tl_requant_params* p, int32_t size, const int8_t* in,
                          int16_t* out);

/* QUANTIZE float -> int16 and DEQUANTIZE int16 -> float. */
void tl_quantize_f32_s16(int32_t zero_point, float scale, int32_t size, const float* in,
                         int16_t* out);
void tl_dequantize_s16_f32(int32_t zero_point, double scale, int32_t size, const int16_t* in,
                           float* out);

#ifdef __cplusplus
}
#endif

#endif /* TL_INT16_ELEMENTWISE_H_ */
