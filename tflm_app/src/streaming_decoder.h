// Online CRF decoding on the device: one room per sample, with O(K) state (plus L x K
// backpointers), however long the stream runs.
//
// A port of tinyloc_tf/decoding.py that keeps its float32 operation order, so
// host and device decide identically from identical emissions:
//  - forward filtering: argmax of p(y_t | x_1..t), the normalised forward recursion in the
//    probability domain with M = exp(transitions - max) and w_t = exp(e_t - max e_t);
//  - fixed-lag Viterbi: the max-product recursion of viterbi.cc, scores shifted by their
//    maximum after every sample; sample t - L is decided at t by backtracking L steps.
// exp is stream_exp_nonpositive (a power-of-two split and a fixed polynomial), not expf,
// whose last bit differs between C libraries. The CRF's end scores are not used: a stream
// has no end.
#ifndef TINYLOC_STREAMING_DECODER_H_
#define TINYLOC_STREAMING_DECODER_H_

#include <stdint.h>

// exp(x) for x <= 0, bit-identical with decoding.exp_nonpositive.
float stream_exp_nonpositive(float x);

struct ForwardFilter {
  int classes;
  float* transition_weights;  // [classes * classes] = exp(transitions - max(transitions))
  float* alpha;               // [classes], the filtered marginal
  float* work;                // [2 * classes]
  int32_t t;                  // samples seen
};

// Storage: transition_weights [K*K], alpha [K], work [2K] floats.
void forward_filter_init(ForwardFilter* f, int classes, const float* transitions, float* transition_weights,
                         float* alpha, float* work);
// Feeds the emission [K] of the next sample; returns the class decided for it.
int32_t forward_filter_step(ForwardFilter* f, const float* emission, const float* start);

struct FixedLagViterbi {
  int classes;
  int lag;
  const float* transitions;  // [classes * classes], transitions[prev * classes + next]
  float* score;              // [classes]
  float* next_score;         // [classes]
  uint8_t* backpointer;      // [max(lag, 1) * classes] ring; classes <= 256
  int32_t t;                 // samples seen
};

// Storage: score [K], next_score [K] floats, backpointer [max(L,1) * K] bytes.
void fixed_lag_init(FixedLagViterbi* v, int classes, int lag, const float* transitions, float* score,
                    float* next_score, uint8_t* backpointer);
// Feeds the emission [K] of sample t. Returns 1 and sets *sample (= t - lag) and *decided when
// a decision is due, else 0 (the first lag samples).
int fixed_lag_step(FixedLagViterbi* v, const float* emission, const float* start, int32_t* sample,
                   int32_t* decided);
// At the end of the stream: writes the pending decisions (samples t - n .. t - 1, oldest
// first) into decided[] and returns n = min(lag, t).
int fixed_lag_flush(FixedLagViterbi* v, int32_t* decided);

#endif  // TINYLOC_STREAMING_DECODER_H_
