// A model runner without a model, for testing the harness where no TFLM tree exists.
//
// Emissions echo the input: output[t * K + k] = input[t * F + (k % F)]. The host side of the
// test computes the same, so the harness's comparison, Viterbi and report are all exercised.
// Like the TFLM runner it owns a static arena of ARENA_BYTES, so an oversized arena fails the
// link exactly as a real one would. Built with -DECHO_INIT_STATUS=n, runner_init fails with
// status n, to test how failures reach the host.
#include "model_runner.h"
#include "model_settings.h"
#include "output.h"

#ifndef ARENA_BYTES
#error "ARENA_BYTES must be defined by the build"
#endif

namespace {
alignas(16) volatile uint8_t g_arena[ARENA_BYTES] __attribute__((section(".bss.tensor_arena")));
}  // namespace

extern "C" int runner_init(void) {
  g_arena[0] = 1;  // keep the arena in the image
#ifdef ECHO_INIT_STATUS
  return output_error(ECHO_INIT_STATUS, "echo runner built to fail with status %d", ECHO_INIT_STATUS);
#else
  return kRunnerOk;
#endif
}

extern "C" int runner_invoke(const int8_t* input, int8_t* output) {
  for (int t = 0; t < kSteps; ++t) {
    for (int k = 0; k < kClasses; ++k) output[t * kClasses + k] = input[t * kFeatures + (k % kFeatures)];
  }
  return kRunnerOk;
}

extern "C" size_t runner_arena_used(void) { return ARENA_BYTES; }
