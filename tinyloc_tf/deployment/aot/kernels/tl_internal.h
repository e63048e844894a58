/*
 * tl_internal.h - small helpers shared by the kernel sources (not part of the
 * API the generated model calls).
 */
#ifndef TL_INTERNAL_H_
#define TL_INTERNAL_H_

#include "tl_fixedpoint.h"
#include "tl_kernels.h"

/* Odometer over all axes of a shape but the last: the kernels run the last
 * axis as a tight inner loop and call this to step the outer axes. `pos`
 * holds the current index per axis, `off` the element offset per operand
 * (up to three operands, each with its own strides). Returns 0 when done. */
static inline int tl_odometer_next(int32_t ndim, const int32_t* shape,
                                   int32_t* pos, int noperands,
                                   const int32_t* const* strides, int32_t* off) {
  for (int32_t d = ndim - 2; d >= 0; --d) {
    for (int k = 0; k < noperands; ++k) off[k] += strides[k][d];
    if (++pos[d] < shape[d]) return 1;
    for (int k = 0; k < noperands; ++k) off[k] -= strides[k][d] * shape[d];
    pos[d] = 0;
  }
  return 0;
}

static inline int32_t tl_outer_count(int32_t ndim, const int32_t* shape) {
  int32_t n = 1;
  for (int32_t d = 0; d + 1 < ndim; ++d) n *= shape[d];
  return n;
}

/* Runs `body` over every output element; i1/i2 are the input offsets and o
 * the dense output offset. Written as a macro so each kernel keeps its
 * arithmetic inline in the innermost loop. */
#define TL_BROADCAST_LOOP(b, body)                                            \
  do {                                                                        \
    const int32_t tl_nd_ = (b)->ndim;                                         \
    const int32_t tl_inner_ = (b)->shape[tl_nd_ - 1];                         \
    const int32_t tl_s1_ = (b)->strides1[tl_nd_ - 1];                         \
    const int32_t tl_s2_ = (b)->strides2[tl_nd_ - 1];                         \
    const int32_t* tl_strides_[2] = {(b)->strides1, (b)->strides2};           \
    int32_t tl_pos_[TL_MAX_DIMS] = {0};                                       \
    int32_t tl_off_[2] = {0, 0};                                              \
    int32_t o = 0;                                                            \
    do {                                                                      \
      int32_t i1 = tl_off_[0];                                                \
      int32_t i2 = tl_off_[1];                                                \
      for (int32_t tl_j_ = 0; tl_j_ < tl_inner_; ++tl_j_) {                   \
        body;                                                                 \
        i1 += tl_s1_;                                                         \
        i2 += tl_s2_;                                                         \
        ++o;                                                                  \
      }                                                                       \
    } while (tl_odometer_next(tl_nd_, (b)->shape, tl_pos_, 2, tl_strides_,   \
                              tl_off_));                                      \
  } while (0)

/* ADD / SUB input rescaling. Parameters copied into locals: every int8 store may
 * alias the params struct, so reading p-> inside the loop would reload it per element. */
typedef struct {
  int32_t off1, off2, mult1, mult2, left;
  int shift1, shift2;
} tl_rescale;

static inline tl_rescale tl_rescale_of(const tl_add_params* p) {
  tl_rescale r;
  r.off1 = p->input1_offset;
  r.off2 = p->input2_offset;
  r.mult1 = p->input1_multiplier;
  r.mult2 = p->input2_multiplier;
  r.left = p->left_shift;
  r.shift1 = (int)p->input1_shift;
  r.shift2 = (int)p->input2_shift;
  return r;
}

/* Both inputs brought to a common scale with `left` bits of headroom (TFLM's
 * general path: 20 bits for int8 ADD / SUB, 7 for SQUARED_DIFFERENCE, 15 for int16). */
#define TL_RESCALE(r, x, v) \
  tl_mbqm_smaller_than_one(tl_wrapping_shl((r).off##v + (x), (r).left), (r).mult##v, (r).shift##v)

#endif /* TL_INTERNAL_H_ */
