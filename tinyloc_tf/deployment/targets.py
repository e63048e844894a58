"""The boards the firmware builds for, discovered from ``tflm_app/targets/<board>/target.mk``.

::

    target_names()            # ("m55", "m4", "stm32l4"): every folder with a target.mk
    get_target("stm32l4")     # Target(name="stm32l4", emulator="renode", tflm_arch="cortex-m4+fp", ...)

A board is a folder of ``tflm_app/targets`` holding a ``target.mk``: the firmware Makefile
includes that file, and this module reads the same file, so adding a board needs no code
change. The variables the Python side reads (see :data:`REQUIRED` and :class:`Target`):

=====================  ====================================================================
TARGET_DESCRIPTION     one line for ``tinyloc deploy --help``
EMULATOR               ``qemu`` or ``renode`` (a Renode board brings its ``run_renode.sh``)
TFLM_TARGET_ARCH       TFLM's ``TARGET_ARCH`` (``cortex-m55``, ``cortex-m4+fp``): which
                       library ``scripts/get_tflm.sh`` builds and the firmware links
CPU_FLAGS              the compiler's CPU flags
BOARD_NAME             the emulated board, for reports and messages
SYSCLK_HZ              the core clock the firmware's SysTick counts
RAM_MAX_BYTES          the board's RAM: the largest ``--ram-kb``
QEMU_MACHINE           QEMU's ``-M`` (QEMU boards only)
TARGET_FVP             optional: the Arm FVP that models the board (``corstone-300``), used
                       instead of QEMU when ``TINYLOC_FVP`` names its binary
=====================  ====================================================================

This module imports neither TensorFlow nor the firmware code, so the command line can list
the boards in its ``--help`` cheaply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tinyloc_tf.errors import TinylocError

#: The firmware application; its ``targets/`` folder holds one folder per board.
APP_DIR = Path(__file__).resolve().parents[2] / "tflm_app"
#: The board ``tinyloc deploy`` builds for when none is named: listed first.
DEFAULT_TARGET = "m55"
EMULATORS = ("qemu", "renode")
#: Variables every target.mk must define for the Python side (QEMU boards also QEMU_MACHINE).
REQUIRED = ("TARGET_DESCRIPTION", "EMULATOR", "TFLM_TARGET_ARCH", "CPU_FLAGS", "BOARD_NAME", "SYSCLK_HZ",
            "RAM_MAX_BYTES")

#: The arena of a probe build (deploy's measurement of the arena a model needs) is at most
#: this, and leaves this much of the board's RAM to .data/.bss besides it, stack and heap.
PROBE_ARENA_BYTES = 256 * 1024
PROBE_OTHER_RAM_BYTES = 12 * 1024


#: TFLM target architectures with Helium (MVE).
HELIUM_CPUS = ("cortex-m55", "cortex-m85")


@dataclass(frozen=True)
class Target:
    """A board of ``tflm_app/targets/<name>/target.mk``: what the Python side needs of it."""

    name: str
    description: str
    emulator: str  # "qemu" or "renode"
    tflm_arch: str
    cpu_flags: str
    board: str
    sysclk_hz: int
    ram_max_bytes: int
    directory: Path
    qemu_machine: str = ""
    fvp: str = ""

    @property
    def has_helium(self) -> bool:
        """The CPU has Arm's M-profile vector extension (Helium: Cortex-M55, M85), for which
        CMSIS-NN has its own kernels."""
        return any(self.tflm_arch.startswith(cpu) for cpu in HELIUM_CPUS)

    @property
    def probe_arena_bytes(self) -> int:
        """The arena of a probe build: as big as the board's RAM allows, at most 256 KiB."""
        return min(PROBE_ARENA_BYTES, self.ram_max_bytes - PROBE_OTHER_RAM_BYTES)


def targets_dir() -> Path:
    # Read APP_DIR at call time, so a test can point the registry at a copy of tflm_app.
    return APP_DIR / "targets"


def target_names() -> tuple[str, ...]:
    """Every board with a ``target.mk``: sorted, the default (``m55``) first."""
    names = sorted(path.parent.name for path in targets_dir().glob("*/target.mk"))
    return tuple(sorted(names, key=lambda name: name != DEFAULT_TARGET))


def get_target(name: str) -> Target:
    """The board ``name``; :class:`TinylocError` naming it and the known boards when there is none."""
    path = targets_dir() / str(name) / "target.mk"
    if name not in target_names():
        raise TinylocError(f"unknown target {name!r} (no tflm_app/targets/{name}/target.mk); "
                           f"choose one of {', '.join(target_names())}")
    values = read_make_variables(path)
    needed = REQUIRED + (("QEMU_MACHINE",) if values.get("EMULATOR") == "qemu" else ())
    missing = [variable for variable in needed if not values.get(variable)]
    if missing:
        raise TinylocError(f"{_shown(path)} does not define {', '.join(missing)}")
    if values["EMULATOR"] not in EMULATORS:
        raise TinylocError(f"{_shown(path)}: EMULATOR := {values['EMULATOR']} is not one of {', '.join(EMULATORS)}")
    try:
        sysclk_hz, ram_max_bytes = int(values["SYSCLK_HZ"], 0), int(values["RAM_MAX_BYTES"], 0)
    except ValueError as exc:
        raise TinylocError(f"{_shown(path)}: SYSCLK_HZ and RAM_MAX_BYTES must be integers ({exc})") from exc
    return Target(
        name=name,
        description=values["TARGET_DESCRIPTION"],
        emulator=values["EMULATOR"],
        tflm_arch=values["TFLM_TARGET_ARCH"],
        cpu_flags=values["CPU_FLAGS"],
        board=values["BOARD_NAME"],
        sysclk_hz=sysclk_hz,
        ram_max_bytes=ram_max_bytes,
        directory=path.parent,
        qemu_machine=values.get("QEMU_MACHINE", ""),
        fvp=values.get("TARGET_FVP", ""),
    )


# Hand-written: no library parses makefile variables, and target.mk only needs the simple
# assignments `NAME := value`, `NAME = value` and `NAME ?= value`. Values are taken as
# written (a `$(...)` is not expanded), so the variables read here must be literal; a `#`
# starts a comment, as in make.
_ASSIGNMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?::=|\?=|=)\s*(.*)$")


def read_make_variables(path) -> dict[str, str]:
    """The simple variable assignments of a makefile fragment, ``{NAME: value}`` (the last wins)."""
    values = {}
    for line in Path(path).read_text().splitlines():
        match = _ASSIGNMENT.match(line.split("#", 1)[0].strip())
        if match:
            values[match.group(1)] = match.group(2).strip()
    return values


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (messages name no absolute paths)."""
    try:
        return str(path.relative_to(APP_DIR.parent))
    except ValueError:
        return str(path)
