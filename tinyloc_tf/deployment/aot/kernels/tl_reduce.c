/*
 * tl_reduce.c - int8 MEAN / SUM / REDUCE_MAX / REDUCE_MIN (TFLM reduce.cc).
 *
 * TFLM sums into an int32 scratch buffer in input order; integer addition is
 * order-free, so these loops go output by output and need no scratch memory.
 */
#include "tl_internal.h"

/* Calls `body` once per input element of the reduced group that starts at
 * element offset `base`; `x` is the element value. */
#define TL_REDUCED_GROUP_LOOP(s, in, base, body)                              \
  do {                                                                        \
    const int32_t* tl_rstr_[1] = {(s)->reduced_strides};                      \
    int32_t tl_rpos_[TL_MAX_DIMS] = {0};                                      \
    int32_t tl_roff_[1] = {0};                                                \
    const int32_t tl_rnd_ = (s)->reduced_ndim;                                \
    const int32_t tl_rin_ = (s)->reduced_shape[tl_rnd_ - 1];                  \
    const int32_t tl_rst_ = (s)->reduced_strides[tl_rnd_ - 1];                \
    do {                                                                      \
      const int8_t* tl_p_ = (in) + (base) + tl_roff_[0];                      \
      for (int32_t tl_j_ = 0; tl_j_ < tl_rin_; ++tl_j_) {                     \
        const int32_t x = tl_p_[tl_j_ * tl_rst_];                             \
        body;                                                                 \
      }                                                                       \
    } while (tl_odometer_next(tl_rnd_, (s)->reduced_shape, tl_rpos_, 1,       \
                              tl_rstr_, tl_roff_));                           \
  } while (0)

/* Steps through the kept (output) axes; `base` is the input offset. */
#define TL_KEPT_LOOP(s, body)                                                 \
  do {                                                                        \
    int32_t tl_kpos_[TL_MAX_DIMS] = {0};                                      \
    int32_t base = 0;                                                         \
    int32_t o = 0;                                                            \
    int32_t tl_more_ = 1;                                                     \
    while (tl_more_) {                                                        \
      body;                                                                   \
      ++o;                                                                    \
      tl_more_ = 0;                                                           \
      for (int32_t d = (s)->kept_ndim - 1; d >= 0; --d) {                     \
        base += (s)->kept_strides[d];                                         \
        if (++tl_kpos_[d] < (s)->kept_shape[d]) {                             \
          tl_more_ = 1;                                                       \
          break;                                                              \
        }                                                                     \
        base -= (s)->kept_strides[d] * (s)->kept_shape[d];                    \
        tl_kpos_[d] = 0;                                                      \
      }                                                                       \
    }                                                                         \
  } while (0)

void tl_reduce_sum_s8(const tl_sum_params* p, const tl_reduce_shape* s,
                      const int8_t* in, int8_t* out) {
  TL_KEPT_LOOP(s, {
    int32_t sum = 0;
    TL_REDUCED_GROUP_LOOP(s, in, base, { sum += x; });
    const int32_t shifted_sum = sum - p->input_zero_point * p->num_elements;
    const int32_t v = tl_mbqm(shifted_sum, p->multiplier, p->shift) + p->output_zero_point;
    out[o] = (int8_t)tl_clamp_i32(v, INT8_MIN, INT8_MAX);
  });
}

void tl_reduce_max_s8(const tl_reduce_shape* s, const int8_t* in, int8_t* out) {
  TL_KEPT_LOOP(s, {
    int32_t m = INT8_MIN;
    TL_REDUCED_GROUP_LOOP(s, in, base, { m = x > m ? x : m; });
    out[o] = (int8_t)m;
  });
}

void tl_reduce_min_s8(const tl_reduce_shape* s, const int8_t* in, int8_t* out) {
  TL_KEPT_LOOP(s, {
    int32_t m = INT8_MAX;
    TL_REDUCED_GROUP_LOOP(s, in, base, { m = x < m ? x : m; });
    out[o] = (int8_t)m;
  });
}
