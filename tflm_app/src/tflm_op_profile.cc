// Per-operator instruction profile of the TFLM runner (make PROFILE=1, `tinyloc deploy --profile`).
//
// TFLM's own profiler hook (MicroProfilerInterface) is compiled out of the release libraries
// with their error strings, and the debug libraries run other code (-O2 kernels, DCHECKs). So
// the profile times the release kernels themselves: every registration in the op resolver
// gets its invoke function replaced by a timed trampoline that calls the original. The counts
// are per operator type (all nodes of one type summed), in the emulator's instructions, less
// the cost of reading the timer. At exit, one JSON line per operator type:
//   {"event": "op_profile", "op": "FULLY_CONNECTED", "calls": 320, "instructions": 1234567}
// with totals over every invoke of the run (the host divides by the number of inferences).
#include "tflm_op_profile.h"

#include <stdlib.h>

#include <utility>

#include "output.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "tensorflow/lite/schema/schema_utils.h"
#include "timing.h"

namespace {

using InvokeFn = TfLiteStatus (*)(TfLiteContext*, TfLiteNode*);

constexpr unsigned kMaxOps = 32;  // operator types per model; more are left untimed

struct OpTiming {
  const char* name = nullptr;
  InvokeFn invoke = nullptr;  // the kernel's own
  uint64_t ticks = 0;
  uint32_t calls = 0;
};

OpTiming g_ops[kMaxOps];
unsigned g_op_count = 0;
uint64_t g_read_ticks = 0;  // one timing_ticks() call, taken off every timed invoke

template <unsigned N>
TfLiteStatus TimedInvoke(TfLiteContext* context, TfLiteNode* node) {
  const uint64_t start = timing_ticks();
  const TfLiteStatus status = g_ops[N].invoke(context, node);
  const uint64_t ticks = timing_ticks() - start;
  g_ops[N].ticks += ticks > g_read_ticks ? ticks - g_read_ticks : 0;
  g_ops[N].calls += 1;
  return status;
}

// One trampoline per slot: the invoke pointer carries no user data to tell slots apart.
template <unsigned... N>
constexpr InvokeFn SlotTable(int slot, std::integer_sequence<unsigned, N...>) {
  constexpr InvokeFn table[] = {&TimedInvoke<N>...};
  return table[slot];
}

void PrintOpProfile() {
  for (unsigned i = 0; i < g_op_count; ++i) {
    JsonLine()
        .Str("event", "op_profile")
        .Str("op", g_ops[i].name)
        .Int("calls", g_ops[i].calls)
        .Int("instructions", static_cast<int64_t>(timing_ticks_to_instructions(g_ops[i].ticks)))
        .End();
  }
}

void Time(TFLMRegistration* registration, const char* name) {
  for (unsigned i = 0; i < g_op_count; ++i) {
    if (g_ops[i].name == name) return;  // one registration per operator type
  }
  if (g_op_count == kMaxOps || registration->invoke == nullptr) return;
  g_ops[g_op_count].name = name;
  g_ops[g_op_count].invoke = registration->invoke;
  registration->invoke = SlotTable(g_op_count, std::make_integer_sequence<unsigned, kMaxOps>());
  ++g_op_count;
}

}  // namespace

void op_profile_attach(const tflite::MicroOpResolver& resolver, const tflite::Model* model) {
  const uint64_t first = timing_ticks();
  g_read_ticks = timing_ticks() - first;
  const auto* codes = model->operator_codes();
  for (unsigned i = 0; codes != nullptr && i < codes->size(); ++i) {
    const tflite::BuiltinOperator op = tflite::GetBuiltinCode(codes->Get(i));
    if (op == tflite::BuiltinOperator_CUSTOM) continue;
    // The resolver hands the interpreter pointers into its own (non-const) table, so the
    // trampoline it stores here is what Invoke() calls.
    Time(const_cast<TFLMRegistration*>(resolver.FindOp(op)), tflite::EnumNameBuiltinOperator(op));
  }
  atexit(PrintOpProfile);  // after main's last invoke, before the exit status
}
