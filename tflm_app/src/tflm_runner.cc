// model_runner.h implemented with TensorFlow Lite Micro's interpreter.
//
// The model is the generated C array (model_data.h), the op resolver registers exactly the
// model's operators (generated model_ops.h) and the tensor arena is a static buffer of
// ARENA_BYTES, so it is part of .bss and the linker checks it against the RAM budget.
#include <stdlib.h>
#include <string.h>

#include <new>

#include "model_data.h"      // generated: g_tinyloc_model, g_tinyloc_model_len
#include "model_ops.h"       // generated: kModelOpCount, RegisterModelOps()
#include "model_runner.h"
#include "model_settings.h"  // generated: kSteps, kFeatures, kClasses, quantization
#include "output.h"
#include "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_arena_constants.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/schema/schema_generated.h"
#include "tensorflow/lite/schema/schema_utils.h"

#ifndef ARENA_BYTES
#error "ARENA_BYTES (the tensor arena size) must be defined by the build"
#endif

namespace {

alignas(16) uint8_t g_arena[ARENA_BYTES] __attribute__((section(".bss.tensor_arena")));

// Resolver and interpreter live in static storage but are constructed in runner_init: no
// static constructors or destructors to run, and the interpreter is only built for a model
// that passed the checks (its constructor would already log errors).
using Resolver = tflite::MicroMutableOpResolver<kModelOpCount>;
alignas(Resolver) uint8_t g_resolver_storage[sizeof(Resolver)];
alignas(tflite::MicroInterpreter) uint8_t g_interpreter_storage[sizeof(tflite::MicroInterpreter)];
Resolver* g_resolver = nullptr;
tflite::MicroInterpreter* g_interpreter = nullptr;

// TFLM places its own allocator and memory planner at the end of the arena without checking
// that they fit (a smaller arena dereferences a null pointer), so check that first.
constexpr size_t kAllocatorBytes = sizeof(tflite::SingleArenaBufferAllocator) + sizeof(tflite::GreedyMemoryPlanner) +
                                   sizeof(tflite::MicroAllocator) + 3 * tflite::MicroArenaBufferAlignment();

// TFLM reports an arena shortfall only in its log ("... missing: N"); keep the largest N so the
// error can say how big the arena must at least be.
size_t g_arena_missing = 0;

// Quiet while searching for the smallest arena, where failed allocations are expected.
bool g_quiet = false;

void LogCallback(const char* text) {
  if (g_quiet) return;
  output_log(text);
  const char* missing = strstr(text, "missing: ");
  if (missing != nullptr) {
    const size_t n = strtoul(missing + 9, nullptr, 10);
    if (n > g_arena_missing) g_arena_missing = n;
  }
}

// Every operator of the model must be in the resolver: say which one is not, by name, before
// the interpreter fails on it with a less specific error.
int CheckOps(const tflite::Model* model) {
  const auto* codes = model->operator_codes();
  for (unsigned i = 0; codes != nullptr && i < codes->size(); ++i) {
    const tflite::OperatorCode* code = codes->Get(i);
    const tflite::BuiltinOperator op = tflite::GetBuiltinCode(code);
    if (op == tflite::BuiltinOperator_CUSTOM) {
      const char* name = code->custom_code() ? code->custom_code()->c_str() : "?";
      if (g_resolver->FindOp(name) == nullptr) {
        return output_error(kRunnerUnsupportedOp, "custom operator %s is not registered", name);
      }
    } else if (g_resolver->FindOp(op) == nullptr) {
      return output_error(kRunnerUnsupportedOp,
                          "operator %s (builtin %d) is not registered in the op resolver",
                          tflite::EnumNameBuiltinOperator(op), static_cast<int>(op));
    }
  }
  return kRunnerOk;
}

// A tensor must be int8 [1, steps, width] with the quantization the harness was generated for.
int CheckTensor(const char* which, const TfLiteTensor* tensor, int width, float scale, int32_t zero_point) {
  if (tensor == nullptr) return output_error(kRunnerShapeMismatch, "model has no %s tensor", which);
  const TfLiteIntArray* dims = tensor->dims;
  const bool shape_ok = dims->size == 3 && dims->data[0] == 1 && dims->data[1] == kSteps && dims->data[2] == width;
  if (tensor->type != kTfLiteInt8 || !shape_ok) {
    return output_error(kRunnerShapeMismatch,
                        "%s tensor is %s with %d dims [%d, %d, %d], the harness expects int8 [1, %d, %d]", which,
                        TfLiteTypeGetName(tensor->type), dims->size, dims->size > 0 ? dims->data[0] : 0,
                        dims->size > 1 ? dims->data[1] : 0, dims->size > 2 ? dims->data[2] : 0, kSteps, width);
  }
  if (tensor->params.scale != scale || tensor->params.zero_point != zero_point) {
    return output_error(kRunnerShapeMismatch,
                        "%s quantization (zero point %ld) differs from the generated settings (zero point %ld)",
                        which, static_cast<long>(tensor->params.zero_point), static_cast<long>(zero_point));
  }
  return kRunnerOk;
}

#ifdef TINYLOC_ARENA_SEARCH
// Probe builds only (tinyloc deploy's first run): the smallest arena AllocateTensors accepts,
// found by bisection in the one static arena. arena_used_bytes() is a lower bound, not the
// answer: TFLM's memory planner needs scratch space during allocation that it gives back.
size_t SmallestArena(const tflite::Model* model, size_t used) {
  g_quiet = true;
  size_t fails = used - 1, works = ARENA_BYTES;  // below `used` TFLM cannot even place its allocator
  while (works - fails > 1) {
    const size_t mid = fails + (works - fails) / 2;
    auto* trial = new (g_interpreter_storage) tflite::MicroInterpreter(model, *g_resolver, g_arena, mid);
    if (trial->AllocateTensors() == kTfLiteOk) {
      works = mid;
    } else {
      fails = mid;
    }
  }
  g_quiet = false;
  return works;
}
#endif

}  // namespace

extern "C" int runner_init(void) {
  RegisterDebugLogCallback(LogCallback);

  const tflite::Model* model = tflite::GetModel(g_tinyloc_model);
  if (model->version() != TFLITE_SCHEMA_VERSION) {
    return output_error(kRunnerSchemaMismatch, "model schema version %lu, this TFLM build reads version %d",
                        static_cast<unsigned long>(model->version()), TFLITE_SCHEMA_VERSION);
  }
  g_resolver = new (g_resolver_storage) Resolver();
  if (RegisterModelOps(*g_resolver) != kTfLiteOk) {
    return output_error(kRunnerInitFailed, "registering the model's %u operators failed", kModelOpCount);
  }
  int status = CheckOps(model);
  if (status != kRunnerOk) return status;

  if (ARENA_BYTES < kAllocatorBytes) {
    return output_error(kRunnerArenaTooSmall,
                        "tensor arena of %u bytes is too small: TFLM's allocators alone need %u bytes",
                        static_cast<unsigned>(ARENA_BYTES), static_cast<unsigned>(kAllocatorBytes));
  }
  g_interpreter = new (g_interpreter_storage) tflite::MicroInterpreter(model, *g_resolver, g_arena, ARENA_BYTES);
  if (g_interpreter->AllocateTensors() != kTfLiteOk) {
    if (g_arena_missing > 0) {
      return output_error(kRunnerArenaTooSmall,
                          "tensor arena of %u bytes is too small: at least %u bytes needed "
                          "(TFLM was missing %u bytes at the allocation that failed)",
                          static_cast<unsigned>(ARENA_BYTES), static_cast<unsigned>(ARENA_BYTES + g_arena_missing),
                          static_cast<unsigned>(g_arena_missing));
    }
    return output_error(kRunnerInitFailed, "AllocateTensors failed (see the TFLM log on stderr)");
  }
#ifdef TINYLOC_ARENA_SEARCH
  const size_t used = g_interpreter->arena_used_bytes();
  JsonLine()
      .Str("event", "arena_search")
      .Int("arena_used_bytes", static_cast<int64_t>(used))
      .Int("arena_min_bytes", static_cast<int64_t>(SmallestArena(model, used)))
      .End();
  g_interpreter = new (g_interpreter_storage) tflite::MicroInterpreter(model, *g_resolver, g_arena, ARENA_BYTES);
  if (g_interpreter->AllocateTensors() != kTfLiteOk) {
    return output_error(kRunnerInitFailed, "AllocateTensors failed again after the arena search");
  }
#endif
  if (g_interpreter->inputs_size() != 1 || g_interpreter->outputs_size() != 1) {
    return output_error(kRunnerShapeMismatch, "model has %u inputs and %u outputs, the harness expects 1 and 1",
                        static_cast<unsigned>(g_interpreter->inputs_size()),
                        static_cast<unsigned>(g_interpreter->outputs_size()));
  }
  status = CheckTensor("input", g_interpreter->input(0), kFeatures, kInputScale, kInputZeroPoint);
  if (status != kRunnerOk) return status;
  return CheckTensor("output", g_interpreter->output(0), kClasses, kOutputScale, kOutputZeroPoint);
}

extern "C" int runner_invoke(const int8_t* input, int8_t* output) {
  if (g_interpreter == nullptr) return output_error(kRunnerInitFailed, "runner_invoke before runner_init");
  memcpy(g_interpreter->input(0)->data.int8, input, kSteps * kFeatures);
  if (g_interpreter->Invoke() != kTfLiteOk) {
    return output_error(kRunnerInvokeFailed, "Invoke failed (see the TFLM log on stderr)");
  }
  memcpy(output, g_interpreter->output(0)->data.int8, kSteps * kClasses);
  return kRunnerOk;
}

extern "C" size_t runner_arena_used(void) {
  return g_interpreter != nullptr ? g_interpreter->arena_used_bytes() : 0;
}
