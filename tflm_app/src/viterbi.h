// Viterbi decoding of a linear-chain CRF on the device, after the model: the .tflite graph
// ends at the emissions (PLATFORM.md: Viterbi inside the graph does not quantize).
//
// A port of tinyloc_tf.decoding.viterbi_decode that keeps its float32 operation order
// (score[prev] + transitions[prev, next], max over prev with ties to the lowest index, then
// + emissions[t, next]), so host and device pick identical paths from identical emissions.
#ifndef TINYLOC_VITERBI_H_
#define TINYLOC_VITERBI_H_

#include <stdint.h>

// Scratch memory the decoder needs for `steps` x `classes`.
struct ViterbiScratch {
  float* score;          // [classes]
  float* next_score;     // [classes]
  uint8_t* backpointer;  // [steps * classes]; classes <= 256
};

// emissions  float [steps * classes], row-major (step, class)
// transitions float [classes * classes], transitions[prev * classes + next]
// start, end float [classes]
// path       int32 [steps] <- best class per step
void viterbi_decode(const float* emissions, int steps, int classes, const float* transitions,
                    const float* start, const float* end, ViterbiScratch scratch, int32_t* path);

// Dequantizes int8 emissions: (q - zero_point) * scale, in float32 like the host.
void dequantize_int8(const int8_t* q, int count, float scale, int32_t zero_point, float* out);

#endif  // TINYLOC_VITERBI_H_
