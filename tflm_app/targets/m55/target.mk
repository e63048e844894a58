# Cortex-M55 (Armv8.1-M, MVE + FPU) on QEMU's mps3-an547: Arm's SSE-300 subsystem, the
# Corstone-300 FPGA image. ITCM at 0x0 holds the image, DTCM at 0x20000000 is the RAM.

# One line for `tinyloc deploy --help` (tinyloc_tf/deployment/targets.py reads this file too).
TARGET_DESCRIPTION := Cortex-M55 (Helium) on QEMU mps3-an547, Arm's Corstone-300
CPU_FLAGS        := -mcpu=cortex-m55 -mfpu=auto -mfloat-abi=hard -mthumb
# TFLM's TARGET_ARCH: the library scripts/get_tflm.sh --build m55 builds and the firmware links.
TFLM_TARGET_ARCH := cortex-m55
QEMU_MACHINE     := mps3-an547
SYSCLK_HZ        := 32000000
FLASH_ORIGIN     := 0x00000000
FLASH_BYTES      := 0x00080000
RAM_ORIGIN       := 0x20000000
RAM_MAX_BYTES    := 0x00080000
BOARD_NAME       := mps3-an547
EMULATOR         := qemu
# The Arm FVP modelling this board: used instead of QEMU when TINYLOC_FVP names its binary.
TARGET_FVP       := corstone-300
# QEMU -icount shift=0: one instruction per virtual nanosecond.
INSTRUCTIONS_PER_SECOND := 1000000000
# Output and exit through semihosting (newlib's librdimon).
BOARD_SRCS       := $(APP_DIR)/targets/semihosting_io.c
BOARD_SPECS      := --specs=rdimon.specs
