# Cortex-M4F STM32L432KC-class part (the paper's STM32L4 class of low-power MCU) on Renode.
# Sizes from ST's STM32L432KC datasheet (DS11451): 256 KB flash at 0x08000000, 64 KB SRAM
# (48 KB SRAM1 at 0x20000000, then 16 KB SRAM2 mapped right after it at 0x2000C000), 80 MHz.
# The platform is stm32l4.repl; run_renode.sh runs an ELF on it.

# One line for `tinyloc deploy --help` (tinyloc_tf/deployment/targets.py reads this file too).
TARGET_DESCRIPTION := Cortex-M4F STM32L432KC-class board (256 KB flash, 64 KB SRAM) on Renode
CPU_FLAGS        := -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard -mthumb
# TFLM's TARGET_ARCH: the library scripts/get_tflm.sh --build stm32l4 builds and the firmware links.
TFLM_TARGET_ARCH := cortex-m4+fp
SYSCLK_HZ        := 80000000
FLASH_ORIGIN     := 0x08000000
FLASH_BYTES      := 0x00040000
RAM_ORIGIN       := 0x20000000
RAM_MAX_BYTES    := 0x00010000
BOARD_NAME       := stm32l432 (Renode)
EMULATOR         := renode
# The CPU's PerformanceInMips in stm32l4.repl: Renode's virtual time per instruction.
INSTRUCTIONS_PER_SECOND := 80000000
# Output over USART2, exit by an exit line (Renode's Cortex-M semihosting has no SYS_WRITE or
# SYS_EXIT): uart_io.c, with newlib's nosys stubs for the rest.
BOARD_SRCS       := $(APP_DIR)/targets/stm32l4/uart_io.c
BOARD_SPECS      := --specs=nosys.specs
