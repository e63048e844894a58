// The one interface between the firmware harness and whatever runs the model.
//
// Two implementations exist: runners/tflm_runner.cc (TensorFlow Lite Micro's interpreter) and
// the ahead-of-time compiled model (`tinyloc compile`). The harness (main.cc) only calls these
// three functions, so both backends share every other line of the firmware and print the same
// report. Tensor geometry and quantization come from the generated model_settings.h.
#ifndef TINYLOC_MODEL_RUNNER_H_
#define TINYLOC_MODEL_RUNNER_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Return codes of runner_init / runner_invoke. The harness exits with the same number, so each
// failure is a distinct QEMU exit status (see docs/firmware.md).
enum RunnerStatus {
  kRunnerOk = 0,
  kRunnerArenaTooSmall = 10,    // tensors do not fit ARENA_BYTES (deploy reports the size needed)
  kRunnerSchemaMismatch = 11,   // .tflite schema version differs from the runtime's
  kRunnerUnsupportedOp = 12,    // an operator of the model is not registered / implemented
  kRunnerShapeMismatch = 13,    // input or output tensor differs from [1, T, F] / [1, T, K] int8
  kRunnerInvokeFailed = 14,     // the model failed while running
  kRunnerInitFailed = 15,       // any other set-up failure
  kRunnerAborted = 16,          // TFLM stopped on a failed internal check (debug builds log it)
};

// Prepares the model (parse, register ops, plan memory). Call once before runner_invoke.
int runner_init(void);

// Runs one window: input int8 [T * F] (row-major, quantized with the model's input scale and
// zero point) -> output int8 [T * K] CRF emissions (the model's output quantization).
int runner_invoke(const int8_t* input, int8_t* output);

// Bytes of the tensor arena actually in use after runner_init.
size_t runner_arena_used(void);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TINYLOC_MODEL_RUNNER_H_
