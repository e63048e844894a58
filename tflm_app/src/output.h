// Everything the firmware prints: one JSON object per line on stdout (semihosting), parsed by
// tinyloc_tf/deployment/firmware.py; TensorFlow Lite Micro's own log goes to stderr.
//
// No floating point is printed: newlib-nano's printf has none, and integers (counts, int8
// values, instructions) are exact.
#ifndef TINYLOC_OUTPUT_H_
#define TINYLOC_OUTPUT_H_

#include <stddef.h>
#include <stdint.h>

// Builds one JSON line: JsonLine().Int("a", 1).Str("b", "x").End();
class JsonLine {
 public:
  JsonLine();
  JsonLine& Int(const char* key, int64_t value);
  JsonLine& Str(const char* key, const char* value);  // value is escaped
  JsonLine& IntArray(const char* key, const int32_t* values, int count);
  void End();  // writes "}\n" and flushes

 private:
  void Key(const char* key);
  void Append(const char* text, size_t n);
  void Flush();

  char buffer_[256];
  size_t used_ = 0;
  bool first_ = true;
};

// Prints {"error": name, "status": status, "message": message} where message is printf-formatted.
// Returns status, so runners can `return output_error(kRunnerArenaTooSmall, "...", ...);`.
int output_error(int status, const char* format, ...) __attribute__((format(printf, 2, 3)));

// Short name of a RunnerStatus / board status ("arena_too_small", ...).
const char* output_status_name(int status);

// Sends TensorFlow Lite Micro's log lines to stderr (registered as its DebugLog callback).
extern "C" void output_log(const char* text);

#endif  // TINYLOC_OUTPUT_H_
