// The firmware's check against the host: its int8 outputs compared with the ones host TFLM
// produced for the same inputs (exported with the test data).
#ifndef TINYLOC_HOST_CHECK_H_
#define TINYLOC_HOST_CHECK_H_

#include <stdint.h>

// How many of the `count` values in `got` equal `expected`; raises *max_abs_diff to the
// largest |got - expected| seen.
int32_t host_check_int8(const int8_t* got, const int8_t* expected, int count, int32_t* max_abs_diff);

#endif  // TINYLOC_HOST_CHECK_H_
