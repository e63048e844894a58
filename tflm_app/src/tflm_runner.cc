// model_runner.h (window models) and streaming_runner.h (step models, HARNESS=streaming, which
// defines TINYLOC_STREAMING) implemented with TensorFlow Lite Micro's interpreter.
//
// The model is the generated C array (model_data.h), the op resolver registers exactly the
// model's operators (generated model_ops.h) and the tensor arena is a static buffer of
// ARENA_BYTES, so it is part of .bss and the linker checks it against the RAM budget. TFLM's
// allocator and memory planner objects are in .bss beside it, not in the arena, so that an
// arena too small for the model ends in one status, kRunnerArenaTooSmall, at every size.
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <new>

#include "model_data.h"      // generated: g_tinyloc_model, g_tinyloc_model_len
#include "model_ops.h"       // generated: kModelOpCount, RegisterModelOps()
#include "model_runner.h"
#include "offline_planner.h"
#include "output.h"
#ifdef TINYLOC_STREAMING
#include "stream_data.h"  // generated: sample, state and emission types and sizes
#include "streaming_runner.h"
#else
#include "model_settings.h"  // generated: kSteps, kFeatures, kClasses, quantization
#endif
#ifdef TINYLOC_OP_PROFILE
#include "tflm_op_profile.h"
#endif
#include "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/compatibility.h"
#include "tensorflow/lite/micro/cortex_m_generic/debug_log_callback.h"
#include "tensorflow/lite/micro/memory_helpers.h"
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

// The arena allocator, failing fast. TFLM hands the nullptr of a failed persistent allocation
// to the kernels (a kernel's Init returns it as its op data, its Prepare then writes through
// it), and address 0 on these boards is the firmware image itself: a short arena would corrupt
// the image, lock the CPU up or spin in a failed DCHECK. Any failed allocation means the arena
// is too small, so it returns to Allocate() at once instead (longjmp: the interpreter being
// built is abandoned, never used again).
jmp_buf g_arena_exhausted;
bool g_jump_armed = false;

void ArenaExhausted() {
  if (g_jump_armed) longjmp(g_arena_exhausted, 1);
}

class FailFastArenaAllocator : public tflite::SingleArenaBufferAllocator {
 public:
  FailFastArenaAllocator(uint8_t* buffer, size_t size) : SingleArenaBufferAllocator(buffer, size) {}

  uint8_t* AllocatePersistentBuffer(size_t size, size_t alignment) override {
    // TFLM checks a persistent (tail) allocation against the head only, so in a short arena it
    // can land on temp allocations still in use (the next temp then sees negative room):
    // the tail may not pass the temp section either.
    const size_t room = GetAvailableMemory(1);  // tail to the end of the temp section
    if (size > room || tail() - tflite::AlignPointerDown(tail() - size, alignment) > static_cast<ptrdiff_t>(room)) {
      ArenaExhausted();
    }
    return Checked(SingleArenaBufferAllocator::AllocatePersistentBuffer(size, alignment));
  }
  uint8_t* AllocateTemp(size_t size, size_t alignment) override {
    return Checked(SingleArenaBufferAllocator::AllocateTemp(size, alignment));
  }
  uint8_t* AllocateResizableBuffer(size_t size, size_t alignment) override {
    return Checked(SingleArenaBufferAllocator::AllocateResizableBuffer(size, alignment));
  }
  TfLiteStatus ResizeBuffer(uint8_t* buffer, size_t size, size_t alignment) override {
    const TfLiteStatus status = SingleArenaBufferAllocator::ResizeBuffer(buffer, size, alignment);
    // ResizeBuffer also refuses a misused buffer; only a lack of room is the arena's fault.
    if (status != kTfLiteOk && buffer != nullptr && size > static_cast<size_t>(tail() - buffer)) ArenaExhausted();
    return status;
  }

 private:
  static uint8_t* Checked(uint8_t* buffer) {
    if (buffer == nullptr) ArenaExhausted();
    return buffer;
  }
  TF_LITE_REMOVE_VIRTUAL_DELETE  // never deleted: lives in static storage, like TFLM's own
};

// A memory planner noting the two ways a plan fails for lack of arena without any allocation
// failing: more buffers than its scratch (taken from the arena) can list, and a plan bigger than
// the arena left ("Too many buffers" / "Arena size is too small" in TFLM's log, which a release
// build does not have). TFLM's greedy planner for a model without a plan, the model's own plan
// (offline_planner.h) for one with.
bool g_plan_short = false;
class FailFastArenaAllocator* g_allocator = nullptr;

template <typename Planner>
class Checked : public Planner {
 public:
  TfLiteStatus AddBuffer(int size, int first_time_used, int last_time_used) override {
    return Note(Planner::AddBuffer(size, first_time_used, last_time_used));
  }
  TfLiteStatus AddBuffer(int size, int first_time_used, int last_time_used, int offline_offset) override {
    return Note(Planner::AddBuffer(size, first_time_used, last_time_used, offline_offset));
  }
  size_t GetMaximumMemorySize() override {
    // TFLM compares this with the memory available right after (MicroAllocator::CommitStaticMemoryPlan).
    const size_t needed = Planner::GetMaximumMemorySize();
    if (needed > g_allocator->GetAvailableMemory(tflite::MicroArenaBufferAlignment())) g_plan_short = true;
    return needed;
  }

 private:
  static TfLiteStatus Note(TfLiteStatus status) {
    if (status != kTfLiteOk) g_plan_short = true;  // its only failure: the list is full
    return status;
  }
  TF_LITE_REMOVE_VIRTUAL_DELETE
};
using GreedyPlanner = Checked<tflite::GreedyMemoryPlanner>;
using PlannedPlanner = Checked<OfflinePlanner>;

// Allocator, planner, resolver and interpreter live in static storage (outside the arena, in
// .bss) but are constructed at run time: no static constructors, and each Allocate() starts
// from fresh objects.
using Resolver = tflite::MicroMutableOpResolver<kModelOpCount>;
alignas(Resolver) uint8_t g_resolver_storage[sizeof(Resolver)];
alignas(FailFastArenaAllocator) uint8_t g_allocator_storage[sizeof(FailFastArenaAllocator)];
constexpr size_t kPlannerBytes = sizeof(GreedyPlanner) > sizeof(PlannedPlanner) ? sizeof(GreedyPlanner) : sizeof(PlannedPlanner);
alignas(GreedyPlanner) alignas(PlannedPlanner) uint8_t g_planner_storage[kPlannerBytes];
alignas(tflite::MicroInterpreter) uint8_t g_interpreter_storage[sizeof(tflite::MicroInterpreter)];
Resolver* g_resolver = nullptr;
tflite::MicroInterpreter* g_interpreter = nullptr;

// Quiet while searching for the smallest arena, where failed allocations are expected.
bool g_quiet = false;

void LogCallback(const char* text) {
  if (g_quiet) return;
  output_log(text);
  // A failed TFLM check (debug builds) logs HALTED and spins for ever: stop with a status instead.
  if (strstr(text, "HALTED") != nullptr) {
    exit(output_error(kRunnerAborted, "TFLM stopped on a failed internal check (its log says which)"));
  }
}

// Builds an interpreter over the first `size` bytes of the arena and allocates the model's
// tensors: kRunnerOk, kRunnerArenaTooSmall, or kRunnerInitFailed for any other failure (a
// kernel's Prepare refusing the model, ...).
int Allocate(const tflite::Model* model, size_t size) {
  g_plan_short = false;
  g_interpreter = nullptr;
  if (setjmp(g_arena_exhausted) != 0) {
    g_jump_armed = false;
    g_interpreter = nullptr;
    return kRunnerArenaTooSmall;
  }
  g_jump_armed = true;
  g_allocator = new (g_allocator_storage) FailFastArenaAllocator(g_arena, size);
  tflite::MicroMemoryPlanner* planner = HasOfflinePlan(model)
                                            ? static_cast<tflite::MicroMemoryPlanner*>(new (g_planner_storage) PlannedPlanner())
                                            : new (g_planner_storage) GreedyPlanner();
  tflite::MicroAllocator* allocator = tflite::MicroAllocator::Create(g_allocator, planner);
  g_interpreter = new (g_interpreter_storage) tflite::MicroInterpreter(model, *g_resolver, allocator);
  const TfLiteStatus status = g_interpreter->AllocateTensors();
  g_jump_armed = false;
  if (status == kTfLiteOk) return kRunnerOk;
  g_interpreter = nullptr;
  return g_plan_short ? kRunnerArenaTooSmall : kRunnerInitFailed;
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

#ifndef TINYLOC_STREAMING
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

// The window harness: one int8 [1, T, F] input, one int8 [1, T, K] output.
int CheckInputsAndOutputs() {
  if (g_interpreter->inputs_size() != 1 || g_interpreter->outputs_size() != 1) {
    return output_error(kRunnerShapeMismatch, "model has %u inputs and %u outputs, the harness expects 1 and 1",
                        static_cast<unsigned>(g_interpreter->inputs_size()),
                        static_cast<unsigned>(g_interpreter->outputs_size()));
  }
  const int status = CheckTensor("input", g_interpreter->input(0), kFeatures, kInputScale, kInputZeroPoint);
  if (status != kRunnerOk) return status;
  return CheckTensor("output", g_interpreter->output(0), kClasses, kOutputScale, kOutputZeroPoint);
}
#else
// A step-model tensor must have the type and byte size the stream export was made for.
int CheckStreamTensor(const char* which, int index, const TfLiteTensor* tensor, TfLiteType type, size_t bytes) {
  if (tensor == nullptr || tensor->type != type || tensor->bytes != bytes) {
    return output_error(kRunnerShapeMismatch, "%s %d is %s of %u bytes, the harness expects %s of %u bytes", which,
                        index, tensor ? TfLiteTypeGetName(tensor->type) : "missing",
                        tensor ? static_cast<unsigned>(tensor->bytes) : 0u, TfLiteTypeGetName(type),
                        static_cast<unsigned>(bytes));
  }
  return kRunnerOk;
}

constexpr TfLiteType TypeOf(int8_t) { return kTfLiteInt8; }
constexpr TfLiteType TypeOf(int16_t) { return kTfLiteInt16; }

// The streaming harness: the sample and each state in, the emissions and each new state out,
// every state output quantized like its input (the harness copies it back byte for byte).
int CheckInputsAndOutputs() {
  const unsigned count = 1 + kStateCount;
  if (g_interpreter->inputs_size() != count || g_interpreter->outputs_size() != count) {
    return output_error(kRunnerShapeMismatch, "model has %u inputs and %u outputs, the stream export has %u and %u",
                        static_cast<unsigned>(g_interpreter->inputs_size()),
                        static_cast<unsigned>(g_interpreter->outputs_size()), count, count);
  }
  int status = CheckStreamTensor("input", 0, g_interpreter->input(0), TypeOf(StreamSample{}),
                                 kStreamFeatures * sizeof(StreamSample));
  if (status == kRunnerOk) {
    status = CheckStreamTensor("output", 0, g_interpreter->output(0), TypeOf(StreamEmission{}),
                               kStreamClasses * sizeof(StreamEmission));
  }
  for (int i = 0; status == kRunnerOk && i < kStateCount; ++i) {
    const TfLiteTensor* in = g_interpreter->input(1 + i);
    const TfLiteTensor* out = g_interpreter->output(1 + i);
    status = CheckStreamTensor("input", 1 + i, in, TypeOf(StreamState{}), kStateBytes[i]);
    if (status == kRunnerOk) status = CheckStreamTensor("output", 1 + i, out, TypeOf(StreamState{}), kStateBytes[i]);
    if (status == kRunnerOk &&
        (in->params.scale != out->params.scale || in->params.zero_point != out->params.zero_point)) {
      status = output_error(kRunnerShapeMismatch, "state %d is quantized differently as output and input", i);
    }
  }
  return status;
}
#endif

#ifdef TINYLOC_ARENA_SEARCH
// Probe builds only (tinyloc deploy's first run): the smallest arena AllocateTensors accepts,
// found by bisection in the one static arena. arena_used_bytes() is a lower bound, not the
// answer: TFLM's memory planner needs scratch space during allocation that it gives back.
size_t SmallestArena(const tflite::Model* model, size_t used) {
  g_quiet = true;
  size_t fails = used - 1, works = ARENA_BYTES;  // below `used` the tensors cannot fit
  while (works - fails > 1) {
    const size_t mid = fails + (works - fails) / 2;
    if (Allocate(model, mid) == kRunnerOk) {
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
#ifdef TINYLOC_OP_PROFILE
  op_profile_attach(*g_resolver, model);
#endif

  status = Allocate(model, ARENA_BYTES);
  if (status == kRunnerArenaTooSmall) {
    return output_error(kRunnerArenaTooSmall,
                        "tensor arena of %u bytes is too small for this model (`tinyloc deploy` measures the "
                        "size it needs)", static_cast<unsigned>(ARENA_BYTES));
  }
  if (status != kRunnerOk) {
    return output_error(status, "AllocateTensors failed for a reason other than the arena size (a debug build, "
                                "tinyloc deploy --debug, logs TFLM's reason)");
  }
#ifdef TINYLOC_ARENA_SEARCH
  const size_t used = g_interpreter->arena_used_bytes();
  JsonLine()
      .Str("event", "arena_search")
      .Int("arena_used_bytes", static_cast<int64_t>(used))
      .Int("arena_min_bytes", static_cast<int64_t>(SmallestArena(model, used)))
      .End();
  if (Allocate(model, ARENA_BYTES) != kRunnerOk) {
    return output_error(kRunnerInitFailed, "AllocateTensors failed again after the arena search");
  }
#endif
  return CheckInputsAndOutputs();
}

#ifdef TINYLOC_STREAMING
extern "C" int runner_invoke_io(const int8_t* const* inputs, int8_t* const* outputs) {
  if (g_interpreter == nullptr) return output_error(kRunnerInitFailed, "runner_invoke_io before runner_init");
  for (unsigned i = 0; i < g_interpreter->inputs_size(); ++i) {
    TfLiteTensor* tensor = g_interpreter->input(i);
    memcpy(tensor->data.raw, inputs[i], tensor->bytes);
  }
  if (g_interpreter->Invoke() != kTfLiteOk) {
    return output_error(kRunnerInvokeFailed, "Invoke failed (see the TFLM log on stderr)");
  }
  for (unsigned i = 0; i < g_interpreter->outputs_size(); ++i) {
    const TfLiteTensor* tensor = g_interpreter->output(i);
    memcpy(outputs[i], tensor->data.raw, tensor->bytes);
  }
  return kRunnerOk;
}
#else
extern "C" int runner_invoke(const int8_t* input, int8_t* output) {
  if (g_interpreter == nullptr) return output_error(kRunnerInitFailed, "runner_invoke before runner_init");
  memcpy(g_interpreter->input(0)->data.int8, input, kSteps * kFeatures);
  if (g_interpreter->Invoke() != kTfLiteOk) {
    return output_error(kRunnerInvokeFailed, "Invoke failed (see the TFLM log on stderr)");
  }
  memcpy(output, g_interpreter->output(0)->data.int8, kSteps * kClasses);
  return kRunnerOk;
}
#endif

extern "C" size_t runner_arena_used(void) {
  return g_interpreter != nullptr ? g_interpreter->arena_used_bytes() : 0;
}
