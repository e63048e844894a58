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

#endif /* TL_INTERNAL_H_ */
