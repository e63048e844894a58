// Reset and fault handling for the Cortex-M targets (M55 on mps3-an547, M4F on mps2-an386, the
// STM32L4-like board on Renode).
//
// Written here rather than taken from newlib's rdimon crt0: that crt0 asks the debugger
// (semihosting SYS_HEAPINFO) where the stack goes, and QEMU answers with the board's megabytes
// of RAM, which would put the stack outside the RAM budget the linker script enforces. Here
// the stack is the top of the budgeted RAM region, and it is painted at boot so the harness
// can report how much of it was used.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "board.h"

// Linker script symbols (targets/cortex_m.ld).
extern uint32_t __data_load__, __data_start__, __data_end__;
extern uint32_t __bss_start__, __bss_end__;
extern uint32_t __heap_start__, __heap_limit__;
extern uint32_t __stack_limit__, __stack_top__;

extern int main(void);
extern void __libc_init_array(void);

#define STACK_PAINT 0xC5C5C5C5u

// Cortex-M System Control Block registers used at boot.
#define SCB_CPACR (*(volatile uint32_t*)0xE000ED88u)

void Reset_Handler(void);
void Default_Handler(void);
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));

// The newlib / GCC start files normally provide these; -nostartfiles drops them.
void _init(void) {}
void _fini(void) {}
void* __dso_handle = 0;  // C++ objects with static storage register their destructors with it

__attribute__((naked, noreturn)) void Reset_Handler(void) {
  // Naked: no prologue may touch the stack before it is painted. Hand over to C at once.
  __asm volatile("b board_start");
}

// Paint the unused stack (everything below the current frame) so board_stack_used() can find
// the deepest address ever written.
static void paint_stack(void) {
  uint32_t* p = &__stack_limit__;
  uint32_t* sp;
  __asm volatile("mov %0, sp" : "=r"(sp));
  while (p < sp - 16) *p++ = STACK_PAINT;  // leave this function's own frame alone
}

__attribute__((noreturn, used)) void board_start(void) {
  // Full access to the FPU (CP10, CP11) before any compiler-generated float code runs.
  SCB_CPACR |= (0xFu << 20);
  __asm volatile("dsb\n isb" ::: "memory");

  uint32_t* src = &__data_load__;
  for (uint32_t* dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
  for (uint32_t* dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
  paint_stack();

  board_io_init();       // the target's I/O: semihosting streams or the UART
  __libc_init_array();  // C++ static constructors
  exit(main());         // the board's _exit hands main's return value to the emulator
}

size_t board_stack_used(void) {
  const uint32_t* p = &__stack_limit__;
  while (p < &__stack_top__ && *p == STACK_PAINT) ++p;
  return (size_t)((const uint8_t*)&__stack_top__ - (const uint8_t*)p);
}

size_t board_stack_bytes(void) {
  return (size_t)((const uint8_t*)&__stack_top__ - (const uint8_t*)&__stack_limit__);
}

size_t board_heap_used(void) {
  // newlib's sbrk hands out memory from the linker's `end` (= __heap_start__) upwards.
  const uint8_t* brk = (const uint8_t*)sbrk(0);
  return (size_t)(brk - (const uint8_t*)&__heap_start__);
}

size_t board_heap_bytes(void) {
  return (size_t)((const uint8_t*)&__heap_limit__ - (const uint8_t*)&__heap_start__);
}

void Default_Handler(void) {
  // A fault: say which exception, then stop QEMU with a distinct status.
  uint32_t ipsr;
  __asm volatile("mrs %0, ipsr" : "=r"(ipsr));
  static const char msg[] = "{\"error\":\"fault\",\"status\":30,\"message\":\"CPU exception, IPSR=0x";
  static const char hex[] = "0123456789abcdef";
  char num[3] = {hex[(ipsr >> 4) & 0xF], hex[ipsr & 0xF], 0};
  write(1, msg, sizeof(msg) - 1);
  write(1, num, 2);
  write(1, "\"}\n", 3);
  _exit(kBoardFaultStatus);
}

// Vector table: initial stack pointer, then the exception handlers.
typedef void (*Handler)(void);
__attribute__((section(".vectors"), used)) const Handler g_vectors[16] = {
    (Handler)&__stack_top__,
    Reset_Handler,
    Default_Handler,  // NMI
    Default_Handler,  // HardFault
    Default_Handler,  // MemManage
    Default_Handler,  // BusFault
    Default_Handler,  // UsageFault
    Default_Handler,  // SecureFault (v8-M), reserved on v7-M
    0,
    0,
    0,
    Default_Handler,  // SVCall
    Default_Handler,  // DebugMonitor
    0,
    Default_Handler,  // PendSV
    SysTick_Handler,  // SysTick (timing.cc)
};
