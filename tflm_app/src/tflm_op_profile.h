// Per-operator instruction profile of the TFLM runner (PROFILE=1 builds only; tflm_op_profile.cc).
#ifndef TINYLOC_TFLM_OP_PROFILE_H_
#define TINYLOC_TFLM_OP_PROFILE_H_

#include "tensorflow/lite/micro/micro_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"

// Times every operator type of `model` registered in `resolver` (call before the interpreter
// is built) and prints the totals as "op_profile" JSON lines when the firmware exits.
void op_profile_attach(const tflite::MicroOpResolver& resolver, const tflite::Model* model);

#endif  // TINYLOC_TFLM_OP_PROFILE_H_
