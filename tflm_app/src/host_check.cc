#include "host_check.h"

int32_t host_check_int8(const int8_t* got, const int8_t* expected, int count, int32_t* max_abs_diff) {
  int32_t equal = 0;
  for (int i = 0; i < count; ++i) {
    const int32_t diff = static_cast<int32_t>(got[i]) - expected[i];
    if (diff == 0) ++equal;
    const int32_t magnitude = diff < 0 ? -diff : diff;
    if (magnitude > *max_abs_diff) *max_abs_diff = magnitude;
  }
  return equal;
}
