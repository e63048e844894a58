// What the target start-up code (targets/startup.c) tells the harness about memory.
#ifndef TINYLOC_BOARD_H_
#define TINYLOC_BOARD_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// Exit status when the CPU takes a fault (hard fault, bus fault, ...).
enum { kBoardFaultStatus = 30 };

// Opens the target's output before main (targets/semihosting_io.c, targets/stm32l4/uart_io.c).
void board_io_init(void);

size_t board_stack_bytes(void);  // stack reserved by the linker script (STACK_BYTES)
size_t board_stack_used(void);   // deepest stack use so far (painted at boot)
size_t board_heap_bytes(void);   // heap reserved by the linker script (HEAP_BYTES)
size_t board_heap_used(void);    // heap handed out by sbrk so far

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // TINYLOC_BOARD_H_
