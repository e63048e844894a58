// A memory planner for models that carry their own arena plan (TFLM's OfflineMemoryAllocation
// metadata, written by `tinyloc deploy`): every tensor goes to its planned offset and the
// scratch buffers kernels ask for are stacked above the plan. It keeps one int per buffer while
// TFLM plans, where TFLM's GreedyMemoryPlanner keeps about 40 bytes per buffer; that planning
// space is taken from the arena, so the plan's size, not the planner's bookkeeping, sets the
// smallest arena.
#ifndef TINYLOC_OFFLINE_PLANNER_H_
#define TINYLOC_OFFLINE_PLANNER_H_

#include <stddef.h>

#include "tensorflow/lite/micro/compatibility.h"
#include "tensorflow/lite/micro/memory_planner/micro_memory_planner.h"

// True when `model` carries an OfflineMemoryAllocation entry.
namespace tflite {
struct Model;
}
bool HasOfflinePlan(const tflite::Model* model);

class OfflinePlanner : public tflite::MicroMemoryPlanner {
 public:
  TfLiteStatus Init(unsigned char* scratch_buffer, int scratch_buffer_size) override;
  // A buffer without a planned offset: a kernel's scratch buffer.
  TfLiteStatus AddBuffer(int size, int first_time_used, int last_time_used) override;
  TfLiteStatus AddBuffer(int size, int first_time_used, int last_time_used, int offline_offset) override;
  size_t GetMaximumMemorySize() override;
  int GetBufferCount() override { return count_; }
  TfLiteStatus GetOffsetForBuffer(int buffer_index, int* offset) override;
  bool preserves_all_tensors() const override { return false; }

 private:
  // Stacks the unplanned buffers above the planned ones (once, after the last AddBuffer).
  void Resolve();

  // Per buffer: its offset, or minus its size until Resolve() places it.
  int* entries_ = nullptr;
  int capacity_ = 0;
  int count_ = 0;
  size_t top_ = 0;  // the end of the highest buffer placed so far
  bool resolved_ = false;

  TF_LITE_REMOVE_VIRTUAL_DELETE
};

#endif  // TINYLOC_OFFLINE_PLANNER_H_
