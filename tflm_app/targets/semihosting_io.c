// Output and exit of the QEMU targets: Arm semihosting through newlib's librdimon. write(1/2)
// reach QEMU's stdout/stderr, and _exit (SYS_EXIT) ends QEMU with the firmware's status.
#include "board.h"

extern void initialise_monitor_handles(void);  // newlib librdimon: opens the semihosting streams

void board_io_init(void) { initialise_monitor_handles(); }
