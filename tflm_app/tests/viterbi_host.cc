// Host build of the firmware's Viterbi (src/viterbi.cc) for tests/test_firmware.py.
//
// stdin:  B T K, then transitions [K*K], start [K], end [K], emissions [B*T*K], all floats as
//         C99 hexadecimal literals (exact); emissions may instead be int8 values when the
//         first line is "B T K scale zero_point" (then they are dequantized first, like main.cc).
// stdout: one line per sequence with its T classes.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "viterbi.h"

static float ReadFloat() {
  char text[64];
  if (scanf("%63s", text) != 1) exit(2);
  return strtof(text, nullptr);
}

int main() {
  char line[256];
  if (!fgets(line, sizeof(line), stdin)) return 2;
  int batch = 0, steps = 0, classes = 0;
  char scale_text[64] = "";
  int zero_point = 0;
  const int fields = sscanf(line, "%d %d %d %63s %d", &batch, &steps, &classes, scale_text, &zero_point);
  if (fields != 3 && fields != 5) return 2;
  const bool quantized = fields == 5;

  std::vector<float> transitions(classes * classes), start(classes), end(classes);
  for (float& v : transitions) v = ReadFloat();
  for (float& v : start) v = ReadFloat();
  for (float& v : end) v = ReadFloat();

  std::vector<float> emissions(steps * classes), score(classes), next(classes);
  std::vector<int8_t> q(steps * classes);
  std::vector<uint8_t> back(steps * classes);
  std::vector<int32_t> path(steps);
  const ViterbiScratch scratch{score.data(), next.data(), back.data()};
  for (int b = 0; b < batch; ++b) {
    if (quantized) {
      for (int8_t& v : q) {
        int value;
        if (scanf("%d", &value) != 1) return 2;
        v = static_cast<int8_t>(value);
      }
      dequantize_int8(q.data(), steps * classes, strtof(scale_text, nullptr), zero_point, emissions.data());
    } else {
      for (float& v : emissions) v = ReadFloat();
    }
    viterbi_decode(emissions.data(), steps, classes, transitions.data(), start.data(), end.data(), scratch,
                   path.data());
    for (int t = 0; t < steps; ++t) printf(t ? " %d" : "%d", static_cast<int>(path[t]));
    printf("\n");
  }
  return 0;
}
