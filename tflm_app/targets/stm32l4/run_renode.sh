#!/usr/bin/env bash
# Run a firmware ELF on the STM32L432-like board (stm32l4.repl) in Renode.
#
#   run_renode.sh FIRMWARE.elf
#
# Prints what the firmware wrote to USART2 on stdout, Renode's instruction count on stderr
# ("renode: executed_instructions=N"), and exits with the status of the firmware's exit line
# (uart_io.c). No exit line within RENODE_VIRTUAL_SECONDS of emulated time (default 20, i.e.
# 1.6 G instructions at the part's 80 MIPS; the longest shipped model's run needs about 0.3 G):
# exit status 124, like timeout(1). Renode runs out the whole span even after the firmware has
# ended (about 1 s of wall time per emulated second here), so keep it short.
#
# Renode: TINYLOC_RENODE (default: `renode` on PATH); scripts/get_renode.sh gets one.
set -euo pipefail
[ $# = 1 ] && [ -f "$1" ] || { echo "usage: run_renode.sh FIRMWARE.elf" >&2; exit 2; }
elf=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
renode=${TINYLOC_RENODE:-renode}
virtual_seconds=${RENODE_VIRTUAL_SECONDS:-20}
command -v "$renode" >/dev/null || { echo "run_renode.sh: Renode not found ($renode); scripts/get_renode.sh gets it" >&2; exit 127; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
touch "$work/uart.txt"
"$renode" --disable-xwt --console --plain \
  -e "\$elf=@$elf; \$uart=@$work/uart.txt; include @$here/stm32l4.resc" \
  -e "emulation RunFor \"$virtual_seconds\"" \
  -e "echo \"executed_instructions=\"; sysbus.cpu ExecutedInstructions" \
  -e "quit" </dev/null >"$work/renode.log" 2>&1 || true

# The board's output: the report on stdout.
tr -d '\r' <"$work/uart.txt"
# The monitor prints the count in hexadecimal (0x...).
hex=$(grep -A1 'executed_instructions=' "$work/renode.log" | tail -1 | grep -o '0x[0-9a-fA-F]*' || true)
echo "renode: executed_instructions=$([ -n "$hex" ] && echo $((hex)) || echo unknown)" >&2
status=$(grep -o '"event":"exit","status":-\?[0-9]*' "$work/uart.txt" | tail -1 | grep -o -- '-\?[0-9]*$' || true)
if [ -z "$status" ]; then
  echo "run_renode.sh: the firmware wrote no exit line within $virtual_seconds s of emulated time; Renode's log ends:" >&2
  tail -15 "$work/renode.log" >&2
  exit 124
fi
exit $((status & 255))
