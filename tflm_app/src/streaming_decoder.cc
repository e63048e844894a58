#include "streaming_decoder.h"

#include <math.h>

// Every product and sum must round on its own, as in numpy: no fused multiply-add.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace {

constexpr float kLog2e = 0x1.715476p+0f;
// 2^f = exp(f ln 2) on [0, 1): float32(ln2^n / n!), highest degree first (decoding.py).
constexpr int kPolyTerms = 8;
constexpr float kExp2Poly[kPolyTerms] = {
    0x1.ffcbfcp-17f, 0x1.430912p-13f, 0x1.5d87fep-10f, 0x1.3b2ab6p-7f,
    0x1.c6b08ep-5f,  0x1.ebfbe0p-3f,  0x1.62e430p-1f,  0x1.0p+0f,
};

int FirstArgmax(const float* values, int count) {
  int best = 0;
  for (int k = 1; k < count; ++k) {
    if (values[k] > values[best]) best = k;  // strict: ties keep the lowest index
  }
  return best;
}

float MaxOf(const float* values, int count) { return values[FirstArgmax(values, count)]; }

// weights / sum(weights) into out; returns 0 when the sum is not positive.
int Normalise(const float* weights, int count, float* out) {
  float total = 0.0f;
  for (int k = 0; k < count; ++k) total = total + weights[k];
  if (!(total > 0.0f)) return 0;
  for (int k = 0; k < count; ++k) out[k] = weights[k] / total;
  return 1;
}

}  // namespace

float stream_exp_nonpositive(float x) {
  const float y = x * kLog2e;
  if (y < -126.0f) return 0.0f;
  const float k = floorf(y);
  const float f = y - k;
  float p = kExp2Poly[0];
  for (int i = 1; i < kPolyTerms; ++i) {
    p = p * f;
    p = p + kExp2Poly[i];
  }
  return ldexpf(p, static_cast<int>(k));
}

void forward_filter_init(ForwardFilter* f, int classes, const float* transitions, float* transition_weights,
                         float* alpha, float* work) {
  f->classes = classes;
  f->transition_weights = transition_weights;
  f->alpha = alpha;
  f->work = work;
  f->t = 0;
  const float top = MaxOf(transitions, classes * classes);
  for (int i = 0; i < classes * classes; ++i) transition_weights[i] = stream_exp_nonpositive(transitions[i] - top);
}

int32_t forward_filter_step(ForwardFilter* f, const float* emission, const float* start) {
  const int k_count = f->classes;
  float* w = f->work;
  float top;
  if (f->t == 0) {
    for (int k = 0; k < k_count; ++k) w[k] = emission[k] + start[k];
    top = MaxOf(w, k_count);
    for (int k = 0; k < k_count; ++k) w[k] = stream_exp_nonpositive(w[k] - top);
    Normalise(w, k_count, f->alpha);
  } else {
    top = MaxOf(emission, k_count);
    for (int k = 0; k < k_count; ++k) w[k] = stream_exp_nonpositive(emission[k] - top);
    // predicted[j] = sum_i alpha[i] M[i, j] in order of i, then times w[j], in place in alpha.
    float* predicted = w + k_count;
    for (int j = 0; j < k_count; ++j) predicted[j] = 0.0f;
    for (int i = 0; i < k_count; ++i) {
      const float a = f->alpha[i];
      const float* row = f->transition_weights + i * k_count;
      for (int j = 0; j < k_count; ++j) predicted[j] = predicted[j] + a * row[j];
    }
    for (int j = 0; j < k_count; ++j) predicted[j] = predicted[j] * w[j];
    if (!Normalise(predicted, k_count, f->alpha)) Normalise(w, k_count, f->alpha);  // all underflowed: restart
  }
  f->t += 1;
  return FirstArgmax(f->alpha, k_count);
}

void fixed_lag_init(FixedLagViterbi* v, int classes, int lag, const float* transitions, float* score,
                    float* next_score, uint8_t* backpointer) {
  v->classes = classes;
  v->lag = lag;
  v->transitions = transitions;
  v->score = score;
  v->next_score = next_score;
  v->backpointer = backpointer;
  v->t = 0;
}

namespace {

// Tag of sample (newest - steps) reached by backtracking from `tag` at the newest sample.
int32_t Backtrack(const FixedLagViterbi* v, int32_t tag, int steps, int32_t* trail) {
  const int32_t newest = v->t - 1;
  for (int s = 0; s < steps; ++s) {
    const int row = (newest - s) % v->lag;
    tag = v->backpointer[row * v->classes + tag];
    if (trail != nullptr) trail[s] = tag;
  }
  return tag;
}

}  // namespace

int fixed_lag_step(FixedLagViterbi* v, const float* emission, const float* start, int32_t* sample,
                   int32_t* decided) {
  const int k_count = v->classes;
  float* score = v->score;
  float* next = v->next_score;
  if (v->t == 0) {
    for (int k = 0; k < k_count; ++k) next[k] = start[k] + emission[k];
  } else {
    uint8_t* back = v->lag ? v->backpointer + (v->t % v->lag) * k_count : nullptr;
    for (int j = 0; j < k_count; ++j) {
      float best = score[0] + v->transitions[j];
      int best_prev = 0;
      for (int i = 1; i < k_count; ++i) {
        const float candidate = score[i] + v->transitions[i * k_count + j];
        if (candidate > best) {
          best = candidate;
          best_prev = i;
        }
      }
      if (back != nullptr) back[j] = static_cast<uint8_t>(best_prev);
      next[j] = best + emission[j];
    }
  }
  const float top = MaxOf(next, k_count);
  for (int k = 0; k < k_count; ++k) score[k] = next[k] - top;
  const int32_t newest = v->t;
  v->t += 1;
  if (newest < v->lag) return 0;
  int32_t tag = FirstArgmax(score, k_count);
  if (v->lag) tag = Backtrack(v, tag, v->lag, nullptr);
  *sample = newest - v->lag;
  *decided = tag;
  return 1;
}

int fixed_lag_flush(FixedLagViterbi* v, int32_t* decided) {
  const int pending = v->lag < v->t ? v->lag : v->t;
  if (pending == 0) return 0;
  // decided[pending - 1] is the newest sample, decided[0] the oldest pending one.
  int32_t tag = FirstArgmax(v->score, v->classes);
  decided[pending - 1] = tag;
  for (int s = 0; s < pending - 1; ++s) {
    const int row = (v->t - 1 - s) % v->lag;
    tag = v->backpointer[row * v->classes + tag];
    decided[pending - 2 - s] = tag;
  }
  return pending;
}
