// Output and exit of the stm32l4 target: USART2, polled, and an exit line.
//
// Renode's Cortex-M semihosting implements only SYS_WRITEC, SYS_WRITE0 and SYS_READC: no
// SYS_WRITE to a file handle and no SYS_EXIT. So the firmware talks like a board does, over
// USART2, and ends with the line {"event":"exit","status":N}; run_renode.sh turns that line
// into its own exit status. Register layout: RM0394 section 38.8 (STM32L4 USART).
#include <stdint.h>
#include <unistd.h>

#include "board.h"

#define USART2_BASE 0x40004400u
#define USART_CR1 (*(volatile uint32_t*)(USART2_BASE + 0x00u))
#define USART_BRR (*(volatile uint32_t*)(USART2_BASE + 0x0Cu))
#define USART_ISR (*(volatile uint32_t*)(USART2_BASE + 0x1Cu))
#define USART_TDR (*(volatile uint32_t*)(USART2_BASE + 0x28u))
#define USART_CR1_UE (1u << 0)
#define USART_CR1_TE (1u << 3)
#define USART_ISR_TXE (1u << 7)
#define SYST_CSR (*(volatile uint32_t*)0xE000E010u)
#define BAUD_RATE 115200u

void board_io_init(void) {
  // A real board first enables the USART2 clock (RCC_APB1ENR1) and routes PA2 to it (GPIO
  // alternate function 7); the emulated part models neither, so they are left out.
  USART_BRR = SYSCLK_HZ / BAUD_RATE;
  USART_CR1 = USART_CR1_UE | USART_CR1_TE;
}

static void uart_put(char c) {
  while ((USART_ISR & USART_ISR_TXE) == 0) {
  }
  USART_TDR = (uint8_t)c;
}

// newlib's write(): stdout (JSON lines) and stderr (TFLM's log) share the one UART; the host
// keeps the lines that start with '{' as the report.
int _write(int fd, const char* text, int n) {
  (void)fd;
  for (int i = 0; i < n; ++i) uart_put(text[i]);
  return n;
}

// newlib's _exit(): print the exit line, then sleep with SysTick and interrupts off, so nothing
// wakes the CPU and Renode's virtual time can jump to the end of the run.
void _exit(int status) {
  static const char head[] = "\n{\"event\":\"exit\",\"status\":";
  _write(1, head, sizeof(head) - 1);
  char digits[12];
  int n = 0;
  unsigned magnitude = status < 0 ? 0u - (unsigned)status : (unsigned)status;
  do {
    digits[n++] = (char)('0' + magnitude % 10u);
    magnitude /= 10u;
  } while (magnitude != 0u);
  if (status < 0) uart_put('-');
  while (n > 0) uart_put(digits[--n]);
  _write(1, "}\n", 2);
  SYST_CSR = 0;
  __asm volatile("cpsid i" ::: "memory");
  for (;;) __asm volatile("wfi");
}
