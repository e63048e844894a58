# Cortex-M4F (Armv7E-M, single-precision FPU; the class of the paper's STM32L4) on QEMU's
# mps2-an386. SSRAM1 at 0x0 holds the image, SSRAM2/3 at 0x20000000 is the RAM.

# One line for `tinyloc deploy --help` (tinyloc_tf/deployment/targets.py reads this file too).
TARGET_DESCRIPTION := Cortex-M4F on QEMU mps2-an386
CPU_FLAGS        := -mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard -mthumb
# TFLM's TARGET_ARCH: the library scripts/get_tflm.sh --build m4 builds and the firmware links.
TFLM_TARGET_ARCH := cortex-m4+fp
QEMU_MACHINE     := mps2-an386
SYSCLK_HZ        := 25000000
FLASH_ORIGIN     := 0x00000000
FLASH_BYTES      := 0x00400000
RAM_ORIGIN       := 0x20000000
RAM_MAX_BYTES    := 0x00400000
BOARD_NAME       := mps2-an386
EMULATOR         := qemu
# QEMU -icount shift=0: one instruction per virtual nanosecond.
INSTRUCTIONS_PER_SECOND := 1000000000
# Output and exit through semihosting (newlib's librdimon).
BOARD_SRCS       := $(APP_DIR)/targets/semihosting_io.c
BOARD_SPECS      := --specs=rdimon.specs
