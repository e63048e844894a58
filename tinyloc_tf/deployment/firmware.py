"""Build the Cortex-M firmware in ``tflm_app/``, run it on an emulated board, read its report.

::

    report = deploy("m.tflite", target="m55", ram_kb=64, data_dir="data/house")

``deploy`` exports the model (:mod:`tinyloc_tf.deployment.export_c`), builds the firmware
with the arena it needs, runs it on the target's emulator (QEMU or Renode, as the board's
``target.mk`` says; the boards: :mod:`tinyloc_tf.deployment.targets`) and returns a JSON-able
dict: agreement with the host TFLM, macro-F1 on the exported windows, arena / flash / RAM bytes
from the ELF and instructions per inference. The RAM budget is the linker script's RAM region,
so a model that does not fit fails to link (:class:`RamBudgetError`), and the firmware itself stops
with a distinct exit status when its arena is too small, the schema version differs, an op
is not registered or the tensors have unexpected shapes (:class:`FirmwareError`).

Arena size: TFLM reports the bytes it keeps in use only after a successful
``AllocateTensors``, and that figure is a little short of what allocation needs (the memory
planner's scratch). ``deploy`` therefore first runs a *probe* build (the board's full RAM, a
generous arena) that bisects for the smallest arena ``AllocateTensors`` accepts, on the
target itself (32-bit pointers: less than the host wheel needs), then builds the budgeted
firmware with exactly that arena.

TFLM builds: ``kernels`` is ``cmsis-nn`` (Arm's CMSIS-NN kernels, the default when
``scripts/get_tflm.sh`` built that library) or ``reference``; ``build`` is ``release``
(TFLM's error strings and DCHECKs compiled out, everything ``-Os``) or ``debug`` (TFLM logs
why a model fails).

Emulators (``EMULATOR`` in ``tflm_app/targets/*/target.mk``): QEMU (``qemu-system-arm``, the
board's ``QEMU_MACHINE``) or Renode (``TINYLOC_RENODE`` or ``renode`` on PATH, through the
board's ``run_renode.sh``, e.g. ``tflm_app/targets/stm32l4/``). Both count instructions, not
cycles. An Arm FVP is used for a board whose ``TARGET_FVP`` is ``corstone-300`` (the M55) when
``TINYLOC_FVP`` names its binary; any other emulator through ``TINYLOC_EMULATOR``, a command
with ``{elf}`` and ``{target}`` placeholders that prints the semihosting output and exits with
the firmware's status; those two report SysTick-derived numbers that mean cycles or time, not
instructions.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyloc_tf.deployment.targets import APP_DIR, DEFAULT_TARGET, Target, get_target
from tinyloc_tf.errors import TinylocError

BACKENDS = ("tflm", "aot")
KERNELS = ("cmsis-nn", "reference")
BUILDS = ("release", "debug")

#: Exit statuses of the firmware (tflm_app/src/model_runner.h, board.h).
EXIT_STATUS = {
    0: "ok",
    10: "arena_too_small",
    11: "schema_version_mismatch",
    12: "unsupported_op",
    13: "input_shape_mismatch",
    14: "invoke_failed",
    15: "init_failed",
    16: "aborted",
    30: "fault",
}

DEFAULT_STACK_BYTES = 4096
DEFAULT_HEAP_BYTES = 512  # newlib-nano's std FILE structs (436 B) on the first write
#: Headroom above the measured stack use before a smaller stack reserve is suggested.
STACK_MARGIN_BYTES = 256
#: Symbols of the exported test data: in flash, but not part of a deployed application.
TEST_DATA_SYMBOLS = ("kTestInput", "kTestDbm", "kHostEmissions", "kHostPath", "kTrueLabel", "kStreamInput")
MODEL_SYMBOL = "g_tinyloc_model"


class FirmwareError(TinylocError):
    """The firmware ran and stopped with a non-zero status; ``status`` and ``name`` say which."""

    def __init__(self, message: str, status: int | None = None, name: str | None = None, needed: int | None = None):
        super().__init__(message)
        self.status = status
        self.name = name
        self.needed = needed


class RamBudgetError(TinylocError):
    """The firmware does not fit the RAM budget: the link failed, ``overflow`` bytes too many."""

    def __init__(self, message: str, overflow: int, ram_kb: int):
        super().__init__(message)
        self.overflow = overflow
        self.ram_kb = ram_kb


# --------------------------------------------------------------------------- environment


def renode_command() -> str | None:
    """The Renode launcher: ``TINYLOC_RENODE``, else ``renode`` on PATH (None when neither)."""
    value = os.environ.get("TINYLOC_RENODE")
    if value:
        return value if shutil.which(value) else None
    return shutil.which("renode")


def missing_tools(target: str | None = None, run: bool = True) -> list[str]:
    """Programs the firmware build (and ``run`` on ``target``, default the QEMU boards) need and lack."""
    tools = ["make", "arm-none-eabi-g++", "arm-none-eabi-size", "arm-none-eabi-nm"]
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if not run:
        return missing
    custom = os.environ.get("TINYLOC_FVP") or os.environ.get("TINYLOC_EMULATOR")
    if target is not None and get_target(target).emulator == "renode":
        if not os.environ.get("TINYLOC_EMULATOR") and renode_command() is None:
            missing.append("renode")
    elif not custom and shutil.which("qemu-system-arm") is None:
        missing.append("qemu-system-arm")
    return missing


def require_tools(target: str | None = None, run: bool = True) -> None:
    missing = missing_tools(target, run)
    if "renode" in missing:
        raise TinylocError(
            f"Renode is missing (the {target} target's emulator): scripts/get_renode.sh builds it; then set "
            "TINYLOC_RENODE to the command it prints, or put a Renode release's `renode` on PATH"
        )
    if missing:
        raise TinylocError(
            f"missing {', '.join(missing)}; install with: sudo apt-get install gcc-arm-none-eabi "
            "libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm make"
        )


def tflm_root(required: bool = True) -> Path | None:
    """The TensorFlow Lite Micro tree named by ``TFLM_ROOT`` (``None`` when unset and not required)."""
    value = os.environ.get("TFLM_ROOT")
    if not value:
        if required:
            raise TinylocError(
                "TFLM_ROOT is not set: point it at a TensorFlow Lite Micro tree (scripts/get_tflm.sh "
                "fetches and builds the pinned one), or deploy with --backend aot, which needs no TFLM"
            )
        return None
    root = Path(value).expanduser()
    if not (root / "tensorflow" / "lite" / "micro" / "micro_interpreter.h").is_file():
        raise TinylocError(f"TFLM_ROOT={root} is not a TensorFlow Lite Micro tree (no tensorflow/lite/micro/micro_interpreter.h)")
    return root


def deploy_skip_reason(backend: str = "tflm", target: str | None = None) -> str | None:
    """Why ``deploy`` cannot run here (missing tools or TFLM tree), or ``None`` when it can."""
    missing = missing_tools(target)
    if missing:
        return f"the Cortex-M toolchain / emulator is missing ({', '.join(missing)})"
    if backend == "tflm":
        try:
            tflm_root()
        except TinylocError as exc:
            return str(exc)
    return None


def tflm_library(root: Path, target: Target, kernels: str = "cmsis-nn", build: str = "release") -> Path:
    """Where TFLM's make puts the static library for ``target`` (get_tflm.sh's names)."""
    build_type = "release" if build == "release" else "default"
    suffix = "_cmsis_nn" if kernels == "cmsis-nn" else ""
    return (root / "gen" / f"cortex_m_generic_{target.tflm_arch}_{build_type}{suffix}_gcc" / "lib"
            / "libtensorflow-microlite.a")


def default_kernels(target: str, build: str = "release") -> str:
    """``cmsis-nn`` when that library is built for ``target`` (or nothing is built yet), else ``reference``."""
    root = tflm_root(required=False)
    if root is None:
        return "cmsis-nn"
    spec = get_target(target)
    if tflm_library(root, spec, "cmsis-nn", build).is_file():
        return "cmsis-nn"
    return "reference" if tflm_library(root, spec, "reference", build).is_file() else "cmsis-nn"


def cmsis_nn_refusal(model) -> str | None:
    """Why TFLM's CMSIS-NN kernels would refuse ``model`` (a ``.tflite`` path or bytes) at
    ``AllocateTensors``, or ``None``. Their int16 FULLY_CONNECTED takes one weight scale per
    tensor only (cmsis_nn/fully_connected.cc: per-channel weights are int8-only), so an int16x8
    model converted with per-channel weights runs on the reference kernels alone."""
    from tinyloc_tf.compression.flatbuffer import read_model, tensor_quantization

    fb = read_model(model)
    for index, op in enumerate(fb.operators):
        if fb.op_name(op) != "FULLY_CONNECTED":
            continue
        data, weights = (fb.tensors[int(i)] for i in op.inputs[:2])
        scales, _, _ = tensor_quantization(weights)
        if fb.type_name(data) == "INT16" and scales is not None and len(scales) > 1:
            return (f"operator {index} (FULLY_CONNECTED) has int16 activations and per-channel weights "
                    f"({len(scales)} scales), which CMSIS-NN's int16 kernel does not take; convert with "
                    "--per-tensor-weights, or deploy with --kernels reference")
    return None


def tflm_kernels(target: str, kernels: str | None, build: str = "release", model=None) -> str:
    """The kernel set a TFLM deploy links (``kernels``, else :func:`default_kernels`), checked;
    fails first when there is no TFLM tree, before any export work. With ``model``: a model
    CMSIS-NN cannot run (:func:`cmsis_nn_refusal`) gets the reference kernels when no kernel set
    was asked for and their library is built, and fails with the reason otherwise."""
    root = tflm_root()
    asked = kernels
    kernels = kernels or default_kernels(target, build)
    _check_choice("kernel set", kernels, KERNELS)
    refusal = cmsis_nn_refusal(model) if kernels == "cmsis-nn" and model is not None else None
    if refusal:
        if asked is None and tflm_library(root, get_target(target), "reference", build).is_file():
            return "reference"
        raise TinylocError(f"{model}: {refusal}")
    return kernels


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise TinylocError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")


# --------------------------------------------------------------------------- build


@dataclass
class Build:
    """A linked firmware image and what the linker and the ELF say about it."""

    elf: Path
    target: str
    ram_kb: int
    arena_bytes: int
    sizes: dict = field(default_factory=dict)
    flash_breakdown: dict = field(default_factory=dict)


def _make_args(gen_dir, target: Target, ram_kb: int, arena_bytes: int, build_dir, runner: str,
               runner_srcs=(), runner_cppflags: str = "", stack_bytes: int = DEFAULT_STACK_BYTES,
               heap_bytes: int = DEFAULT_HEAP_BYTES, defines=(), kernels: str = "cmsis-nn",
               build_type: str = "release", lto: bool = False, harness: str = "window",
               profile: bool = False, tables: bool = False) -> list[str]:
    args = [
        "make", "-s", "-C", str(APP_DIR), f"-j{min(os.cpu_count() or 1, 4)}",
        f"GEN_DIR={Path(gen_dir).resolve()}", f"TARGET={target.name}", f"RAM_KB={int(ram_kb)}",
        f"ARENA_BYTES={int(arena_bytes)}", f"STACK_BYTES={int(stack_bytes)}", f"HEAP_BYTES={int(heap_bytes)}",
        f"BUILD_DIR={Path(build_dir).resolve()}", f"RUNNER={runner}", f"KERNELS={kernels}", f"BUILD={build_type}",
        f"LTO={1 if lto else 0}", f"HARNESS={harness}", f"PROFILE={1 if profile else 0}",
        f"TABLES={1 if tables else 0}",
    ]
    if runner == "tflm":
        args.append(f"TFLM_ROOT={tflm_root()}")
    if runner_srcs:
        args.append("RUNNER_SRCS=" + " ".join(str(Path(s).resolve()) for s in runner_srcs))
    if runner_cppflags:
        args.append(f"RUNNER_CPPFLAGS={runner_cppflags}")
    if defines:
        args.append("EXTRA_CPPFLAGS=" + " ".join(f"-D{d}" for d in defines))
    return args


def build(gen_dir, target: str, ram_kb: int, arena_bytes: int, build_dir, runner: str = "tflm",
          runner_srcs=(), runner_cppflags: str = "", stack_bytes: int = DEFAULT_STACK_BYTES,
          heap_bytes: int = DEFAULT_HEAP_BYTES, defines=(), timeout: float = 3600.0, kernels: str | None = None,
          build_type: str = "release", lto: bool = False, harness: str = "window", profile: bool = False,
          tables: bool = False) -> Build:
    """Compile and link the firmware; :class:`RamBudgetError` when it does not fit ``ram_kb``.

    ``defines`` are extra preprocessor names (``TINYLOC_ARENA_SEARCH`` for a probe build).
    ``profile``: the TFLM runner times every operator type (src/tflm_op_profile.cc).
    ``tables``: the TFLM runner answers int8 LOGISTIC and TANH from lookup tables (src/table_kernel.cc).
    ``kernels`` / ``build_type`` pick the TFLM library (default: :func:`default_kernels`).
    ``harness``: ``window`` (src/main.cc) or ``streaming`` (src/streaming_main.cc).
    """
    spec = get_target(target)
    require_tools(target, run=False)
    _check_choice("build", build_type, BUILDS)
    if runner == "tflm":
        kernels = kernels or default_kernels(target, build_type)
    kernels = kernels or "cmsis-nn"  # only the tflm runner links a TFLM library
    _check_choice("kernel set", kernels, KERNELS)
    if ram_kb * 1024 > spec.ram_max_bytes:
        raise TinylocError(f"--ram-kb {ram_kb} is more than the {spec.board} board has ({spec.ram_max_bytes // 1024} KB)")
    if runner == "tflm":
        root = tflm_root()
        if not tflm_library(root, spec, kernels, build_type).is_file():
            print(f"building TFLM's {kernels} {build_type} library for {spec.tflm_arch} in {root} "
                  "(10-45 minutes, once)", flush=True)
    args = _make_args(gen_dir, spec, ram_kb, arena_bytes, build_dir, runner, runner_srcs, runner_cppflags,
                      stack_bytes, heap_bytes, defines, kernels, build_type, lto, harness, profile,
                      tables)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        overflow = re.search(r"region `RAM' overflowed by (\d+) bytes", output)
        if overflow:
            over = int(overflow.group(1))
            needed = ram_kb * 1024 + over
            # The AOT runner's arena is its static memory plan, a .bss array: the TFLM arena
            # reservation (a placeholder of a few bytes) is not what the model uses.
            arena_part = (f"tensor arena {arena_bytes} B + " if runner != "aot" else "")
            rest = needed - (arena_bytes if runner != "aot" else 0) - stack_bytes - heap_bytes
            data_part = "other .data/.bss" if runner != "aot" else ".data/.bss (the AOT arena included)"
            raise RamBudgetError(
                f"the firmware needs {needed} bytes of RAM ({over} more than --ram-kb {ram_kb}): "
                f"{arena_part}stack {stack_bytes} B + heap {heap_bytes} B + {data_part} "
                f"{rest} B; the smallest budget that links is --ram-kb {math.ceil(needed / 1024)}",
                overflow=over,
                ram_kb=ram_kb,
            )
        missing_ops = sorted(set(re.findall(r"undefined reference to `tflite::Register_(\w+)\(", output)))
        if missing_ops:
            raise TinylocError(
                f"the TFLM library has no kernel for {', '.join(missing_ops)}: scripts/get_tflm.sh builds the "
                "kernels listed in its KERNELS_BUILT; run it again if the operator is listed there (the library "
                "was built before it joined), else add it there and run it"
            )
        raise TinylocError(f"firmware build failed ({' '.join(shlex.quote(a) for a in args)}):\n{_tail(output)}")
    elf = Path(build_dir) / "firmware.elf"
    map_file = Path(build_dir) / "firmware.map"
    return Build(elf=elf, target=target, ram_kb=ram_kb, arena_bytes=arena_bytes, sizes=elf_sizes(elf),
                 flash_breakdown=flash_breakdown(map_file) if map_file.is_file() else {})


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def elf_sizes(elf) -> dict:
    """Flash and RAM of an ELF from its sections and symbols (``size``/``nm`` of the toolchain).

    flash_bytes = model + code: the loadable image without the exported test windows.
    ram_bytes = .data + .bss (tensor arena included) + reserved heap + reserved stack.
    """
    sections = {}
    out = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    symbols = {}
    nm = subprocess.run(["arm-none-eabi-nm", "-S", "--defined-only", str(elf)], capture_output=True, text=True,
                        check=True).stdout
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 4:
            symbols[parts[3]] = int(parts[1], 16)
        elif len(parts) == 3:
            symbols.setdefault(parts[2], None)
            if parts[2] == "__ram_used__":
                symbols[parts[2]] = int(parts[0], 16)
    flash_sections = (".text", ".ARM.extab", ".ARM.exidx", ".preinit_array", ".init_array", ".fini_array", ".data")
    image = sum(sections.get(name, 0) for name in flash_sections)
    test_data = sum(symbols.get(name) or 0 for name in TEST_DATA_SYMBOLS)
    model = symbols.get(MODEL_SYMBOL) or 0
    ram = symbols.get("__ram_used__")
    if ram is None:
        ram = sum(sections.get(name, 0) for name in (".data", ".bss", ".heap", ".stack"))
    return {
        "flash_bytes": image - test_data,
        "model_bytes": model,
        "code_bytes": image - test_data - model,
        "test_data_bytes": test_data,
        "ram_bytes": ram,
        "data_bytes": sections.get(".data", 0),
        "bss_bytes": sections.get(".bss", 0),
        "heap_reserved_bytes": sections.get(".heap", 0),
        "stack_reserved_bytes": sections.get(".stack", 0),
    }


#: Output sections of tflm_app/targets/cortex_m.ld that occupy flash (.data: its load image).
FLASH_OUTPUT_SECTIONS = (".text", ".ARM.extab", ".ARM.exidx", ".preinit_array", ".init_array", ".fini_array",
                         ".data")
FLASH_PARTS = ("tflm", "cmsis_nn", "app", "model", "test_data", "libc", "other")


def _flash_part(origin: str) -> str:
    """Which part of the firmware an input file of the link belongs to."""
    member = re.search(r"([^/]+)\.a\(([^)]+)\)$", origin)
    if member:
        library, obj = member.groups()
        if library == "libtensorflow-microlite":
            return "cmsis_nn" if obj.startswith("arm_") else "tflm"  # CMSIS-NN's functions are arm_*.c
        return "libc"  # newlib-nano, libm, libgcc, libstdc++, librdimon / libnosys
    name = Path(origin).name
    if name == "model_data.o":
        return "model"
    if name in ("test_windows.o", "test_stream.o"):
        return "test_data"
    if name.startswith("crt"):
        return "libc"
    if "ltrans" in name:
        return "other"  # code that link-time optimisation merged: its origin is lost
    return "app"


def flash_breakdown(map_file) -> dict:
    """Flash bytes per part (FLASH_PARTS) from the linker's map file.

    Every input section placed in a flash output section is attributed to the file it came
    from: TFLM's library (CMSIS-NN's ``arm_*`` objects apart), the model array, the exported test
    windows, the C/C++ runtime libraries, and the application (harness, AOT runner); padding
    is "other". With LTO the merged code cannot be attributed and counts as "other".
    """
    parts = dict.fromkeys(FLASH_PARTS, 0)
    in_map, section, pending = False, None, False
    for line in Path(map_file).read_text(errors="replace").splitlines():
        if line.startswith("Linker script and memory map"):
            in_map = True
            continue
        if not in_map or not line.strip():
            continue
        if not line[0].isspace():
            name = line.split()[0]
            section, pending = (name if name in FLASH_OUTPUT_SECTIONS else None), False
            continue
        if section is None:
            continue
        fill = re.match(r"^ \*fill\*\s+0x[0-9a-f]+\s+0x([0-9a-f]+)", line)
        if fill:
            parts["other"] += int(fill.group(1), 16)
            continue
        one_line = re.match(r"^ (?!\*)\S+\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S.*)$", line)
        if one_line:
            parts[_flash_part(one_line.group(2).strip())] += int(one_line.group(1), 16)
            pending = False
            continue
        if re.match(r"^ (?!\*)\S+\s*$", line):  # a long section name: its numbers follow on the next line
            pending = True
            continue
        numbers = re.match(r"^\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+(\S.*)$", line)
        if numbers and pending:
            parts[_flash_part(numbers.group(2).strip())] += int(numbers.group(1), 16)
        pending = False
    return parts


# --------------------------------------------------------------------------- run


@dataclass
class Run:
    """What a firmware run printed: JSON records (stdout) and the TFLM log (stderr)."""

    status: int
    records: list[dict]
    log: str
    command: list[str]

    @property
    def executed_instructions(self) -> int | None:
        """The emulator's count of every instruction of the run (Renode only), else None."""
        match = re.search(r"renode: executed_instructions=(\d+)", self.log)
        return int(match.group(1)) if match else None

    @property
    def summary(self) -> dict | None:
        return next((r for r in self.records if r.get("event") == "summary"), None)

    @property
    def error(self) -> dict | None:
        return next((r for r in self.records if "error" in r), None)

    @property
    def windows(self) -> list[dict]:
        return [r for r in self.records if "window" in r]


def emulator_command(elf, target: str) -> tuple[list[str], str]:
    """The command that runs ``elf`` for ``target`` and the emulator's name."""
    custom = os.environ.get("TINYLOC_EMULATOR")
    if custom:
        return shlex.split(custom.format(elf=shlex.quote(str(elf)), target=target)), "custom"
    spec = get_target(target)
    fvp = os.environ.get("TINYLOC_FVP")
    if fvp and spec.fvp == "corstone-300":
        # Flags of TFLM's own Corstone-300 test script, plus semihosting.
        return [fvp, "-C", "mps3_board.visualisation.disable-visualisation=1",
                "-C", "mps3_board.telnetterminal0.start_telnet=0", "-C", 'mps3_board.uart0.out_file=-',
                "-C", "mps3_board.uart0.unbuffered_output=1", "-C", "cpu0.semihosting-enable=1",
                "-a", str(elf)], "fvp"
    if spec.emulator == "renode":
        # The board's run_renode.sh prints the UART on stdout and exits with the firmware's exit line.
        return [str(spec.directory / "run_renode.sh"), str(elf)], "renode"
    return ["qemu-system-arm", "-M", spec.qemu_machine, "-nographic", "-monitor", "none", "-serial", "null",
            "-semihosting-config", "enable=on,target=native", "-icount", "shift=0,align=off,sleep=off",
            "-kernel", str(elf)], "qemu"


def run(elf, target: str, timeout: float = 300.0) -> Run:
    """Run a firmware image to its end; returns its status and parsed report."""
    command, emulator = emulator_command(elf, target)
    env = dict(os.environ)
    if emulator == "renode" and renode_command():
        env["TINYLOC_RENODE"] = renode_command()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        # The build folder may be temporary and gone by the time this is read: name the target.
        raise FirmwareError(f"the firmware did not finish within {timeout:.0f} s on {target} ({emulator}); "
                            "it hung (no exit, no fault)", name="timeout") from exc
    records = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # a line interleaved with emulator output; the summary check catches real loss
    return Run(status=proc.returncode, records=records, log=proc.stderr, command=command)


def check_run(result: Run, arena_needed: int | None = None) -> dict:
    """The summary of a successful run, else :class:`FirmwareError` with the firmware's message."""
    if result.status == 0 and result.summary is not None:
        return result.summary
    name = EXIT_STATUS.get(result.status, "error")
    error = result.error or {}
    message = error.get("message") or _tail(result.log, 8) or "no output"
    if result.status == 0:
        message = "the firmware exited 0 without its summary line"
    text = f"firmware stopped with status {result.status} ({name}): {message}"
    if name == "arena_too_small" and arena_needed:
        text += f"; this model needs a {arena_needed}-byte arena on this target (--arena-bytes {arena_needed})"
    return_needed = arena_needed if name == "arena_too_small" else None
    raise FirmwareError(text, status=result.status, name=name, needed=return_needed)


# --------------------------------------------------------------------------- deploy


def _probe_arena(gen: Path, spec: Target, build_dir: Path, stack_bytes: int, heap_bytes: int,
                 kernels: str, build_type: str, tables: bool = False, harness: str = "window") -> tuple[int, int]:
    """Smallest TFLM arena on ``spec`` (bisected on the target) and the stack the run used."""
    probe = build(gen, spec.name, spec.ram_max_bytes // 1024, spec.probe_arena_bytes, build_dir, "tflm",
                  stack_bytes=stack_bytes, heap_bytes=heap_bytes, defines=["TINYLOC_ARENA_SEARCH"],
                  kernels=kernels, build_type=build_type, tables=tables, harness=harness)
    result = run(probe.elf, spec.name, timeout=900.0)
    summary = check_run(result)
    search = next((r for r in result.records if r.get("event") == "arena_search"), None)
    if search is None:
        raise FirmwareError("the probe firmware did not report its arena search")
    return int(search["arena_min_bytes"]), int(summary["stack_used_bytes"])


def op_profile(records: list[dict], inferences: int, total_key: str = "instructions_total") -> dict:
    """Where a profiled run's instructions went: per operator type, per inference.

    ``ops``: ``{op, calls, instructions, share}`` sorted by instructions (``calls`` and
    ``instructions`` per inference, ``share`` of the profiled invoke); ``outside_kernels``: the
    rest of the invoke (TFLM's interpreter loop, the harness' copies, the timer reads).
    ``total_key``: the summary field that counts the invokes' instructions (the streaming
    harness' ``model_instructions_total`` leaves its decoder out).
    """
    summary = next((r for r in records if r.get("event") == "summary"), None)
    rows = [r for r in records if r.get("event") == "op_profile"]
    if summary is None or not rows or inferences <= 0:
        raise FirmwareError("the profiled firmware printed no op_profile lines (was it built with PROFILE=1?)")
    total = summary[total_key] / inferences
    ops = sorted(
        ({"op": r["op"], "calls": r["calls"] / inferences, "instructions": r["instructions"] / inferences} for r in rows),
        key=lambda r: -r["instructions"],
    )
    for r in ops:
        r["share"] = r["instructions"] / total if total else None
    return {
        "instructions_per_inference": total,
        "ops": ops,
        "outside_kernels": total - sum(r["instructions"] for r in ops),
    }


def _round8(n: int) -> int:
    return int(n) // 8 * 8


def _aot_runner(tflite_path: Path, out_dir: Path) -> tuple[list[Path], str]:
    """Sources and include flags of the AOT-compiled model (``tinyloc compile``)."""
    try:
        from tinyloc_tf.deployment.aot import compile_tflite
    except ImportError as exc:
        raise TinylocError(
            f"--backend aot needs tinyloc_tf.deployment.aot.compile_tflite, which is not available ({exc})"
        ) from exc
    result = compile_tflite(tflite_path, out_dir)
    sources = _field(result, "sources")
    includes = _field(result, "include_dirs")
    if not sources:
        sources = sorted(p for p in Path(out_dir).rglob("*") if p.suffix in (".c", ".cc", ".cpp"))
    if not includes:
        includes = sorted({p.parent for p in Path(out_dir).rglob("*.h")})
    if not sources:
        raise TinylocError(f"the AOT compiler wrote no C/C++ sources into {out_dir}")
    return [Path(s) for s in sources], " ".join(f"-I{Path(i).resolve()}" for i in includes)


def _field(result, name):
    if isinstance(result, dict):
        return result.get(name)
    return getattr(result, name, None)


def _scores(labels: np.ndarray, paths: np.ndarray) -> dict:
    known = labels.reshape(-1) >= 0
    if not known.any():
        return {"macro_f1": None, "accuracy": None}
    from tinyloc_tf.training.metrics import accuracy, macro_f1

    t, p = labels.reshape(-1)[known], paths.reshape(-1)[known]
    return {"macro_f1": macro_f1(t, p), "accuracy": accuracy(t, p)}


class StepBar:
    """One tqdm bar over a deploy's named steps; ``step(name)`` marks one done (no bar when
    ``enabled`` is false)."""

    def __init__(self, steps, desc: str, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=len(steps), desc=desc, unit="step", leave=False)

    def __call__(self, name: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(name)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def deploy(
    tflite_path,
    target: str = DEFAULT_TARGET,
    ram_kb: int = 64,
    backend: str = "tflm",
    data_dir=None,
    windows: int = 16,
    out_dir=None,
    arena_bytes: int | None = None,
    stack_bytes: int = DEFAULT_STACK_BYTES,
    heap_bytes: int = DEFAULT_HEAP_BYTES,
    crf_file=None,
    progress: bool = True,
    kernels: str | None = None,
    build_type: str = "release",
    lto: bool = False,
    profile: bool = False,
    optimize: bool = False,
) -> dict:
    """Export, build and run ``tflite_path`` on ``target`` within ``ram_kb``; the JSON report.

    ``profile`` (TFLM backend): a second build that times every operator type adds
    ``op_profile`` (:func:`op_profile`) to the report; the report's other numbers come from the
    build without the timer reads. ``optimize`` (TFLM backend): tinyloc's bit-exact optimisations
    for TFLM's kernels: int8 LOGISTIC and TANH answered from lookup tables computed by the host
    TFLM (:mod:`tinyloc_tf.deployment.op_tables`) and, on a target without Helium, single-row
    fully connected layers made 2-D (:mod:`tinyloc_tf.deployment.graph_rewrite`; with Helium
    CMSIS-NN runs the original layout faster).

    ``arena_bytes`` forces the TFLM arena (default: what the probe run measured), e.g. to see
    the firmware's own too-small-arena failure. ``kernels`` (``cmsis-nn`` / ``reference``,
    default :func:`default_kernels`) and ``build_type`` (``release`` / ``debug``) pick the TFLM
    library. Build files go to ``out_dir`` (default: a temporary folder, removed afterwards).
    """
    from tinyloc_tf.deployment.export_c import export_c, load_windows

    if backend not in BACKENDS:
        raise TinylocError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    spec = get_target(target)
    require_tools(target)
    _check_choice("build", build_type, BUILDS)
    if backend == "tflm":
        kernels = tflm_kernels(target, kernels, build_type, model=tflite_path)
    else:
        kernels = None  # the AOT backend has its own kernels
        if profile:
            raise TinylocError("--profile times TFLM's kernels; the aot backend has no operators to time "
                               "(its generated C is one function per layer: see `tinyloc compile`)")
        if optimize:
            raise TinylocError("--optimize rewrites the model for TFLM's kernels; the aot backend has its own")
    steps = ["export", "aot compile" if backend == "aot" else "probe", "build", "run"] + (["profile"] if profile else [])
    step = StepBar(steps, f"deploy {target}/{backend}", progress)

    with tempfile.TemporaryDirectory(prefix="tinyloc-deploy-") as tmp:
        work = Path(out_dir) if out_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        gen = work / "export"
        try:
            manifest = export_c(tflite_path, gen, data_dir=data_dir, windows=windows, crf_file=crf_file,
                                rewrite_fully_connected=optimize and not spec.has_helium)
            step("export")

            runner, runner_srcs, runner_cppflags = backend, (), ""
            probe_arena = probe_stack = None
            if backend == "aot":
                runner_srcs, runner_cppflags = _aot_runner(Path(tflite_path), work / "aot")
            else:
                probe_arena, probe_stack = _probe_arena(gen, spec, work / "probe", stack_bytes, heap_bytes,
                                                        kernels, build_type, optimize)
            step(steps[1])

            arena = int(arena_bytes) if arena_bytes is not None else int(probe_arena or 16)
            try:
                firmware = build(gen, target, ram_kb, arena, work / "build", runner, runner_srcs, runner_cppflags,
                                 stack_bytes=stack_bytes, heap_bytes=heap_bytes, kernels=kernels,
                                 build_type=build_type, lto=lto, tables=optimize)
            except RamBudgetError as exc:
                smaller = _round8(stack_bytes - exc.overflow)
                if probe_stack is not None and smaller >= probe_stack + STACK_MARGIN_BYTES:
                    # The probe measured the stack: a smaller reserve may be all it takes.
                    exc.args = (f"{exc.args[0]}; or keep --ram-kb {ram_kb}: the probe run used {probe_stack} B "
                                f"of stack, so --stack-bytes {smaller} would fit",)
                raise
            step("build")
            result = run(firmware.elf, target)
            summary = check_run(result, arena_needed=probe_arena)
            step("run")
            if profile:
                profiled = build(gen, target, ram_kb, arena, work / "profile", runner, stack_bytes=stack_bytes,
                                 heap_bytes=heap_bytes, kernels=kernels, build_type=build_type, lto=lto, profile=True,
                                 tables=optimize)
                profile_run = run(profiled.elf, target)
                check_run(profile_run, arena_needed=probe_arena)
                step("profile")
        finally:
            step.close()

        expected = load_windows(gen)
        paths = np.array([w["path"] for w in sorted(result.windows, key=lambda w: w["window"])], dtype=np.int32)
        if paths.shape != expected["host_path"].shape:
            raise FirmwareError(f"the firmware reported {len(paths)} windows, {len(expected['host_path'])} were exported")
        _, emulator = emulator_command(firmware.elf, target)
        n_windows = int(summary["windows"])
        report = {
            "model": str(tflite_path),
            "target": target,
            "board": spec.board if emulator in ("qemu", "renode") else emulator,
            "backend": backend,
            "kernels": kernels,
            "optimized": bool(optimize),
            "build": build_type,
            "lto": bool(lto),
            "ram_kb": int(ram_kb),
            "windows": n_windows,
            "windows_source": manifest.get("split"),
            # dbm_table: the firmware turned raw dBm into its input itself (deployment/input_table.py)
            "input": "dbm_table" if summary.get("input_from_dbm") else "quantized",
            "emissions_bit_exact": summary["emission_values_equal"] == summary["emission_values"],
            "emission_agreement": summary["emission_values_equal"] / max(summary["emission_values"], 1),
            "emission_max_abs_diff": summary["emission_max_abs_diff"],
            "path_agreement": float(np.mean(paths == expected["host_path"])) if paths.size else None,
            **_scores(expected["labels"], paths),
            # The arena the model needs: for TFLM the smallest that AllocateTensors accepts (what
            # the build reserved), for the AOT backend its static memory plan.
            "arena_bytes": arena if backend == "tflm" else int(summary["arena_used_bytes"]),
            "arena_in_use_bytes": int(summary["arena_used_bytes"]),  # after init (TFLM: arena_used_bytes())
            **firmware.sizes,
            "flash_breakdown": firmware.flash_breakdown,
            "stack_used_bytes": summary["stack_used_bytes"],
            "heap_used_bytes": summary["heap_used_bytes"],
            "instructions_per_inference": summary["instructions_total"] / n_windows if n_windows else None,
            "instructions_min": summary["instructions_min"],
            "instructions_max": summary["instructions_max"],
            "init_instructions": summary["init_instructions"],
            "instructions_exact": emulator in ("qemu", "renode"),
            "executed_instructions": result.executed_instructions,  # Renode: the whole run
            "emulator": emulator,
        }
        if optimize:
            report["graph_rewrites"] = manifest.get("graph_rewrites", {"single_row_fully_connected_2d": 0})
        if profile:
            report["op_profile"] = op_profile(profile_run.records, n_windows)
        if summary["heap_used_bytes"] > summary["heap_bytes"]:
            raise FirmwareError(
                f"the firmware used {summary['heap_used_bytes']} bytes of heap, more than the {summary['heap_bytes']} reserved "
                "(it grew into the stack); raise the heap reserve"
            )
        if summary["stack_used_bytes"] >= summary["stack_bytes"]:
            raise FirmwareError(
                f"the stack ({summary['stack_bytes']} bytes) was used to its end; raise the stack reserve"
            )
        return report

