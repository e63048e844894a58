# Cortex-M55 (Armv8.1-M, MVE + FPU) on QEMU's mps3-an547: Arm's SSE-300 subsystem, the
# Corstone-300 FPGA image. ITCM at 0x0 holds the image, DTCM at 0x20000000 is the RAM.
CPU_FLAGS        := -mcpu=cortex-m55 -mfpu=auto -mfloat-abi=hard -mthumb
TFLM_TARGET_ARCH := cortex-m55
QEMU_MACHINE     := mps3-an547
SYSCLK_HZ        := 32000000
FLASH_ORIGIN     := 0x00000000
FLASH_BYTES      := 0x00080000
RAM_ORIGIN       := 0x20000000
RAM_MAX_BYTES    := 0x00080000
BOARD_NAME       := mps3-an547
EMULATOR         := qemu
# QEMU -icount shift=0: one instruction per virtual nanosecond.
INSTRUCTIONS_PER_SECOND := 1000000000
# Output and exit through semihosting (newlib's librdimon).
BOARD_SRCS       := $(APP_DIR)/targets/semihosting_io.c
BOARD_SPECS      := --specs=rdimon.specs
