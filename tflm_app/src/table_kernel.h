// int8 activations as 256-entry lookup tables (make TABLES=1; `tinyloc deploy --optimize`).
//
// TFLM computes int8 LOGISTIC and TANH per element in fixed point, and CMSIS-NN has no int8
// kernel for either. Each node's output is a function of its input value alone, so the export
// evaluates TFLM's arithmetic on the 256 input values (tinyloc_tf/deployment/op_tables.py) and
// the firmware looks the answer up: bit-exact with TFLM, one load per element.
#ifndef TINYLOC_TABLE_KERNEL_H_
#define TINYLOC_TABLE_KERNEL_H_

#include <stdint.h>

#include "tensorflow/lite/micro/micro_common.h"

// One table of the model (generated model_tables.cc): values[(uint8_t)q] answers input q.
struct ActivationTable {
  int op;  // tflite::BuiltinOperator
  float input_scale;
  int32_t input_zero_point;
  float output_scale;
  int32_t output_zero_point;
  int8_t values[256];
};

extern const ActivationTable kActivationTables[];
extern const int kActivationTableCount;

// Kernels that find their node's table (by operator and quantization) in Prepare.
TFLMRegistration Register_TABLE_LOGISTIC();
TFLMRegistration Register_TABLE_TANH();

#endif  // TINYLOC_TABLE_KERNEL_H_
