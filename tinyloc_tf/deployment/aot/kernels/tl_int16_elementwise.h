/* tl_int16_elementwise.h - int16x8 kernels (int16 activations): element-wise operators. */
#ifndef TL_INT16_ELEMENTWISE_H_
#define TL_INT16_ELEMENTWISE_H_

#include "tl_kernels.h"

#endif /* TL_INT16_ELEMENTWISE_H_ */
