/* tl_int16_linear.h - int16x8 kernels (int16 activations, int8 weights): linear operators. */
#ifndef TL_INT16_LINEAR_H_
#define TL_INT16_LINEAR_H_

#include "tl_kernels.h"

#endif /* TL_INT16_LINEAR_H_ */
