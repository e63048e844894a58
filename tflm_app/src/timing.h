// Instruction counting with SysTick.
//
// Under QEMU's `-icount shift=0,align=off,sleep=off` virtual time advances exactly 1 ns per
// guest instruction, and SysTick (clocked from the CPU clock, SYSCLK_HZ) advances with virtual
// time. So a SysTick difference of n ticks is n * 1e9 / SYSCLK_HZ instructions: deterministic
// instruction counts, not cycles (QEMU models no pipeline; DWT->CYCCNT reads 0 there). The
// resolution is one tick (31.25 instructions at 32 MHz, 40 at 25 MHz).
#ifndef TINYLOC_TIMING_H_
#define TINYLOC_TIMING_H_

#include <stdint.h>

// Starts SysTick free-running from the CPU clock; wrap-arounds are counted in its interrupt.
void timing_init(void);

// Ticks since timing_init (64-bit, never wraps in practice).
uint64_t timing_ticks(void);

// Converts a tick difference into guest instructions (assumes -icount shift=0).
uint64_t timing_ticks_to_instructions(uint64_t ticks);

#endif  // TINYLOC_TIMING_H_
