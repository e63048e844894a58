#include "timing.h"

#ifndef SYSCLK_HZ
#error "SYSCLK_HZ (the board's CPU clock in Hz) must be defined by the build"
#endif
// The emulator's instruction rate against its virtual time: QEMU -icount shift=0 runs one
// instruction per nanosecond, Renode runs the CPU's PerformanceInMips (targets/*/target.mk).
#ifndef INSTRUCTIONS_PER_SECOND
#define INSTRUCTIONS_PER_SECOND 1000000000ull
#endif

namespace {

// SysTick registers (Armv7-M / Armv8-M architecture reference manual, B3.3).
volatile uint32_t& kSysTickCtrl = *reinterpret_cast<volatile uint32_t*>(0xE000E010u);
volatile uint32_t& kSysTickLoad = *reinterpret_cast<volatile uint32_t*>(0xE000E014u);
volatile uint32_t& kSysTickVal = *reinterpret_cast<volatile uint32_t*>(0xE000E018u);

constexpr uint32_t kCtrlEnable = 1u << 0;
constexpr uint32_t kCtrlTickInt = 1u << 1;
constexpr uint32_t kCtrlCpuClock = 1u << 2;
constexpr uint32_t kReload = 0x00FFFFFFu;  // the 24-bit counter's full range

volatile uint32_t g_wraps = 0;

}  // namespace

extern "C" void SysTick_Handler(void) { g_wraps = g_wraps + 1; }

void timing_init(void) {
  kSysTickCtrl = 0;
  kSysTickLoad = kReload;
  kSysTickVal = 0;
  kSysTickCtrl = kCtrlCpuClock | kCtrlTickInt | kCtrlEnable;
}

uint64_t timing_ticks(void) {
  // Re-read if a wrap was counted in between, so the two halves belong together.
  uint32_t wraps, val;
  do {
    wraps = g_wraps;
    val = kSysTickVal;
  } while (wraps != g_wraps);
  return (static_cast<uint64_t>(wraps) * (kReload + 1u)) + (kReload - val);
}

uint64_t timing_ticks_to_instructions(uint64_t ticks) {
  return ticks * static_cast<uint64_t>(INSTRUCTIONS_PER_SECOND) / static_cast<uint64_t>(SYSCLK_HZ);
}
