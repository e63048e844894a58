/*
 * tl_layout.c - data movement. One strided N-d copy serves TRANSPOSE,
 * STRIDED_SLICE, SLICE, SPLIT, UNPACK, PACK, CONCATENATION and PAD: the
 * compiler turns each of them into copies with suitable strides, so the
 * values are moved, never recomputed.
 */
#include <string.h>

#include "tl_internal.h"

void tl_copy_nd(const tl_copy_desc* d, size_t elem_size, const void* src, void* dst) {
  const uint8_t* s = (const uint8_t*)src;
  uint8_t* t = (uint8_t*)dst;
  const int32_t nd = d->ndim;
  const int32_t inner = d->shape[nd - 1];
  const int32_t src_step = d->src_strides[nd - 1];
  const int32_t dst_step = d->dst_strides[nd - 1];
  const int32_t* strides[2] = {d->src_strides, d->dst_strides};
  int32_t pos[TL_MAX_DIMS] = {0};
  int32_t off[2] = {0, 0};
  do {
    if (src_step == 1 && dst_step == 1) {
      memcpy(t + (size_t)off[1] * elem_size, s + (size_t)off[0] * elem_size,
             (size_t)inner * elem_size);
    } else if (elem_size == 1) {
      const uint8_t* sp = s + off[0];
      uint8_t* tp = t + off[1];
      for (int32_t j = 0; j < inner; ++j) tp[j * dst_step] = sp[j * src_step];
    } else {
      for (int32_t j = 0; j < inner; ++j) {
        memcpy(t + (size_t)(off[1] + j * dst_step) * elem_size,
               s + (size_t)(off[0] + j * src_step) * elem_size, elem_size);
      }
    }
  } while (tl_odometer_next(nd, d->shape, pos, 2, strides, off));
}

void tl_fill(size_t elem_size, int32_t count, const void* value, void* dst) {
  uint8_t* t = (uint8_t*)dst;
  if (elem_size == 1) {
    memset(t, *(const uint8_t*)value, (size_t)count);
    return;
  }
  for (int32_t i = 0; i < count; ++i) memcpy(t + (size_t)i * elem_size, value, elem_size);
}
