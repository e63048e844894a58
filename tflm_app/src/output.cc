#include "output.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "board.h"
#include "model_runner.h"

namespace {

// Straight to the semihosting file descriptors: no stdio buffers, so no heap.
void WriteAll(int fd, const char* text, size_t n) {
  while (n > 0) {
    const ssize_t written = write(fd, text, n);
    if (written <= 0) return;
    text += written;
    n -= static_cast<size_t>(written);
  }
}

}  // namespace

JsonLine::JsonLine() { Append("{", 1); }

void JsonLine::Flush() {
  WriteAll(1, buffer_, used_);
  used_ = 0;
}

void JsonLine::Append(const char* text, size_t n) {
  while (n > 0) {
    if (used_ == sizeof(buffer_)) Flush();
    const size_t room = sizeof(buffer_) - used_;
    const size_t chunk = n < room ? n : room;
    memcpy(buffer_ + used_, text, chunk);
    used_ += chunk;
    text += chunk;
    n -= chunk;
  }
}

void JsonLine::Key(const char* key) {
  if (!first_) Append(",", 1);
  first_ = false;
  Append("\"", 1);
  Append(key, strlen(key));
  Append("\":", 2);
}

JsonLine& JsonLine::Int(const char* key, int64_t value) {
  Key(key);
  char text[24];
  // %lld is not in every newlib-nano build; print the magnitude in two 32-bit halves.
  const bool negative = value < 0;
  uint64_t magnitude = negative ? 0ull - static_cast<uint64_t>(value) : static_cast<uint64_t>(value);
  char digits[21];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + magnitude % 10u);
    magnitude /= 10u;
  } while (magnitude != 0);
  int k = 0;
  if (negative) text[k++] = '-';
  while (n > 0) text[k++] = digits[--n];
  Append(text, static_cast<size_t>(k));
  return *this;
}

JsonLine& JsonLine::Str(const char* key, const char* value) {
  Key(key);
  Append("\"", 1);
  for (const char* c = value; *c != '\0'; ++c) {
    const unsigned char ch = static_cast<unsigned char>(*c);
    if (ch == '"' || ch == '\\') {
      const char escaped[2] = {'\\', static_cast<char>(ch)};
      Append(escaped, 2);
    } else if (ch < 0x20) {
      char escaped[7];
      snprintf(escaped, sizeof(escaped), "\\u%04x", ch);
      Append(escaped, 6);
    } else {
      Append(c, 1);
    }
  }
  Append("\"", 1);
  return *this;
}

JsonLine& JsonLine::IntArray(const char* key, const int32_t* values, int count) {
  Key(key);
  Append("[", 1);
  for (int i = 0; i < count; ++i) {
    char text[16];
    const int n = snprintf(text, sizeof(text), i == 0 ? "%ld" : ",%ld", static_cast<long>(values[i]));
    Append(text, static_cast<size_t>(n));
  }
  Append("]", 1);
  return *this;
}

void JsonLine::End() {
  Append("}\n", 2);
  Flush();
}

const char* output_status_name(int status) {
  switch (status) {
    case kRunnerOk: return "ok";
    case kRunnerArenaTooSmall: return "arena_too_small";
    case kRunnerSchemaMismatch: return "schema_version_mismatch";
    case kRunnerUnsupportedOp: return "unsupported_op";
    case kRunnerShapeMismatch: return "input_shape_mismatch";
    case kRunnerInvokeFailed: return "invoke_failed";
    case kRunnerInitFailed: return "init_failed";
    case kRunnerAborted: return "aborted";
    case kBoardFaultStatus: return "fault";
    default: return "error";
  }
}

int output_error(int status, const char* format, ...) {
  char message[200];
  va_list args;
  va_start(args, format);
  vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  JsonLine().Str("error", output_status_name(status)).Int("status", status).Str("message", message).End();
  return status;
}

extern "C" void output_log(const char* text) { WriteAll(2, text, strlen(text)); }
