#include "viterbi.h"

void viterbi_decode(const float* emissions, int steps, int classes, const float* transitions,
                    const float* start, const float* end, ViterbiScratch scratch, int32_t* path) {
  if (steps <= 0) return;
  float* score = scratch.score;
  float* next_score = scratch.next_score;

  for (int k = 0; k < classes; ++k) score[k] = start[k] + emissions[k];

  for (int t = 1; t < steps; ++t) {
    uint8_t* back = scratch.backpointer + (t - 1) * classes;
    for (int next = 0; next < classes; ++next) {
      float best = score[0] + transitions[next];
      int best_prev = 0;
      for (int prev = 1; prev < classes; ++prev) {
        const float candidate = score[prev] + transitions[prev * classes + next];
        if (candidate > best) {  // strict: ties keep the lowest index, like numpy.argmax
          best = candidate;
          best_prev = prev;
        }
      }
      back[next] = static_cast<uint8_t>(best_prev);
      next_score[next] = best + emissions[t * classes + next];
    }
    float* swap = score;
    score = next_score;
    next_score = swap;
  }

  float best = score[0] + end[0];
  int32_t last = 0;
  for (int k = 1; k < classes; ++k) {
    const float candidate = score[k] + end[k];
    if (candidate > best) {
      best = candidate;
      last = k;
    }
  }
  path[steps - 1] = last;
  for (int t = steps - 1; t > 0; --t) {
    path[t - 1] = scratch.backpointer[(t - 1) * classes + path[t]];
  }
}

void dequantize_int8(const int8_t* q, int count, float scale, int32_t zero_point, float* out) {
  for (int i = 0; i < count; ++i) {
    out[i] = static_cast<float>(static_cast<int32_t>(q[i]) - zero_point) * scale;
  }
}
