// See offline_planner.h.
#include "offline_planner.h"

#include <string.h>

#include "tensorflow/lite/micro/micro_arena_constants.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace {
constexpr char kOfflinePlanName[] = "OfflineMemoryAllocation";  // TFLM's name for the entry
}

bool HasOfflinePlan(const tflite::Model* model) {
  const auto* entries = model->metadata();
  for (unsigned i = 0; entries != nullptr && i < entries->size(); ++i) {
    const auto* name = entries->Get(i)->name();
    if (name != nullptr && strcmp(name->c_str(), kOfflinePlanName) == 0) return true;
  }
  return false;
}

TfLiteStatus OfflinePlanner::Init(unsigned char* scratch_buffer, int scratch_buffer_size) {
  entries_ = reinterpret_cast<int*>(scratch_buffer);
  capacity_ = scratch_buffer_size / static_cast<int>(sizeof(int));
  count_ = 0;
  top_ = 0;
  resolved_ = false;
  return kTfLiteOk;
}

TfLiteStatus OfflinePlanner::AddBuffer(int size, int first_time_used, int last_time_used) {
  if (count_ >= capacity_ || size <= 0) return kTfLiteError;
  entries_[count_++] = -size;
  resolved_ = false;
  return kTfLiteOk;
}

TfLiteStatus OfflinePlanner::AddBuffer(int size, int first_time_used, int last_time_used, int offline_offset) {
  if (count_ >= capacity_ || offline_offset < 0) return kTfLiteError;
  entries_[count_++] = offline_offset;
  const size_t end = static_cast<size_t>(offline_offset) + static_cast<size_t>(size);
  if (end > top_) top_ = end;
  resolved_ = false;
  return kTfLiteOk;
}

void OfflinePlanner::Resolve() {
  if (resolved_) return;
  for (int i = 0; i < count_; ++i) {
    if (entries_[i] < 0) {
      const size_t size = static_cast<size_t>(-entries_[i]);
      top_ = (top_ + tflite::MicroArenaBufferAlignment() - 1) / tflite::MicroArenaBufferAlignment() *
             tflite::MicroArenaBufferAlignment();
      entries_[i] = static_cast<int>(top_);
      top_ += size;
    }
  }
  resolved_ = true;
}

size_t OfflinePlanner::GetMaximumMemorySize() {
  Resolve();
  return top_;
}

TfLiteStatus OfflinePlanner::GetOffsetForBuffer(int buffer_index, int* offset) {
  if (buffer_index < 0 || buffer_index >= count_) return kTfLiteError;
  Resolve();
  *offset = entries_[buffer_index];
  return kTfLiteOk;
}
