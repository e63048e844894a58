// The runner interface of a streaming step model: several inputs and outputs per call.
//
// The step model (`tinyloc convert RUN --streaming`) takes the sample and each carried state
// tensor, and returns the emissions and each new state (canonical order: sample, states in;
// emissions, states out). The AOT compiler (`tinyloc compile`) implements runner_invoke_io for
// such a graph, and so does the TFLM runner (tflm_runner.cc with TINYLOC_STREAMING); both take int8
// or int16 tensors. runner_init, runner_arena_used and the status codes are model_runner.h's.
#ifndef TINYLOC_STREAMING_RUNNER_H_
#define TINYLOC_STREAMING_RUNNER_H_

#include <stdint.h>

#include "model_runner.h"

#ifdef __cplusplus
extern "C" {
#endif

// inputs[0]: the sample [F]; inputs[1 + i]: state i. outputs[0]: the emissions [K]; outputs[1 + i]:
// new state i, quantized like inputs[1 + i] (so the caller copies it back). Each pointer is the
// tensor's bytes, its elements of the types stream_data.h names (int8_t, or int16_t).
int runner_invoke_io(const int8_t* const* inputs, int8_t* const* outputs);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TINYLOC_STREAMING_RUNNER_H_
