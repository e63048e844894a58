// Host build of the firmware's online decoders (src/streaming_decoder.cc) for
// tests/test_streaming.py.
//
// stdin:  "exp N" then N floats (C99 hex): prints exp_nonpositive of each as hex, one per line; or
//         "N K METHOD LAG" (METHOD filter|viterbi), transitions [K*K], start [K], emissions [N*K]
//         as hex floats: prints the N decided classes on one line (path[t] = decision for t).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "streaming_decoder.h"

static float ReadFloat() {
  char text[64];
  if (scanf("%63s", text) != 1) exit(2);
  return strtof(text, nullptr);
}

int main() {
  char first[32];
  if (scanf("%31s", first) != 1) return 2;
  if (strcmp(first, "exp") == 0) {
    int n = 0;
    if (scanf("%d", &n) != 1) return 2;
    for (int i = 0; i < n; ++i) printf("%a\n", static_cast<double>(stream_exp_nonpositive(ReadFloat())));
    return 0;
  }
  const int n = atoi(first);
  int classes = 0, lag = 0;
  char method[16];
  if (scanf("%d %15s %d", &classes, method, &lag) != 3) return 2;
  std::vector<float> transitions(classes * classes), start(classes), emissions(n * classes);
  for (float& v : transitions) v = ReadFloat();
  for (float& v : start) v = ReadFloat();
  for (float& v : emissions) v = ReadFloat();
  std::vector<int32_t> path(n, -1);
  if (strcmp(method, "filter") == 0) {
    std::vector<float> weights(classes * classes), alpha(classes), work(2 * classes);
    ForwardFilter f;
    forward_filter_init(&f, classes, transitions.data(), weights.data(), alpha.data(), work.data());
    for (int t = 0; t < n; ++t) path[t] = forward_filter_step(&f, &emissions[t * classes], start.data());
  } else {
    std::vector<float> score(classes), next(classes);
    std::vector<uint8_t> back((lag > 0 ? lag : 1) * classes);
    std::vector<int32_t> pending(lag > 0 ? lag : 1);
    FixedLagViterbi v;
    fixed_lag_init(&v, classes, lag, transitions.data(), score.data(), next.data(), back.data());
    for (int t = 0; t < n; ++t) {
      int32_t sample, decided;
      if (fixed_lag_step(&v, &emissions[t * classes], start.data(), &sample, &decided)) path[sample] = decided;
    }
    const int count = fixed_lag_flush(&v, pending.data());
    for (int i = 0; i < count; ++i) path[n - count + i] = pending[i];
  }
  for (int t = 0; t < n; ++t) printf(t ? " %d" : "%d", static_cast<int>(path[t]));
  printf("\n");
  return 0;
}
