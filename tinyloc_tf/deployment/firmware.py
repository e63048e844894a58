"""Build the Cortex-M firmware in ``tflm_app/``, run it on an emulated board, read its report.

::

    report = deploy("m.tflite", target="m55", ram_kb=64, data_dir="data/house")

``deploy`` exports the model (:mod:`tinyloc_tf.deployment.export_c`), builds the firmware
with the arena it needs, runs it under QEMU and returns a JSON-able dict: agreement with
the host TFLM, macro-F1 on the exported windows, arena / flash / RAM bytes from the ELF and
instructions per inference. The RAM budget is the linker script's RAM region, so a model
that does not fit fails to link (:class:`RamBudgetError`), and the firmware itself stops
with a distinct exit status when its arena is too small, the schema version differs, an op
is not registered or the tensors have unexpected shapes (:class:`FirmwareError`).

Arena size: TFLM reports the bytes it keeps in use only after a successful
``AllocateTensors``, and that figure is a little short of what allocation needs (the memory
planner's scratch). ``deploy`` therefore first runs a *probe* build (the board's full RAM, a
generous arena) that bisects for the smallest arena ``AllocateTensors`` accepts, on the
target itself (32-bit pointers: less than the host wheel needs), then builds the budgeted
firmware with exactly that arena.

Emulator: QEMU (``qemu-system-arm``, boards in ``tflm_app/targets/*/target.mk``). An Arm
FVP is used for the M55 when ``TINYLOC_FVP`` names its binary (Corstone-300); any other
emulator (Renode, ...) through ``TINYLOC_EMULATOR``, a command with ``{elf}`` and
``{target}`` placeholders that prints the semihosting output and exits with the
firmware's status. Instruction counts are QEMU's (``-icount``); other emulators report
SysTick-derived numbers that mean cycles or time, not instructions.
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

from tinyloc_tf.errors import TinylocError

APP_DIR = Path(__file__).resolve().parents[2] / "tflm_app"
TARGETS = ("m55", "m4")
BACKENDS = ("tflm", "aot")

#: Exit statuses of the firmware (tflm_app/src/model_runner.h, board.h).
EXIT_STATUS = {
    0: "ok",
    10: "arena_too_small",
    11: "schema_version_mismatch",
    12: "unsupported_op",
    13: "input_shape_mismatch",
    14: "invoke_failed",
    15: "init_failed",
    30: "fault",
}

DEFAULT_STACK_BYTES = 4096
DEFAULT_HEAP_BYTES = 512  # newlib-nano's std FILE structs (436 B) on the first write
PROBE_ARENA_BYTES = 256 * 1024
#: Headroom above the measured stack use before a smaller stack reserve is suggested.
STACK_MARGIN_BYTES = 256
#: Symbols of the exported test data: in flash, but not part of a deployed application.
TEST_DATA_SYMBOLS = ("kTestInput", "kHostEmissions", "kHostPath", "kTrueLabel")
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


@dataclass
class Target:
    """A board of tflm_app/targets/<name>/target.mk."""

    name: str
    cpu_flags: str
    tflm_arch: str
    qemu_machine: str
    sysclk_hz: int
    ram_max_bytes: int

    @classmethod
    def load(cls, name: str) -> "Target":
        path = APP_DIR / "targets" / name / "target.mk"
        if name not in TARGETS or not path.is_file():
            raise TinylocError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
        values = {}
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*([A-Z_]+)\s*:=\s*(.*?)\s*$", line)
            if match:
                values[match.group(1)] = match.group(2)
        return cls(
            name=name,
            cpu_flags=values["CPU_FLAGS"],
            tflm_arch=values["TFLM_TARGET_ARCH"],
            qemu_machine=values["QEMU_MACHINE"],
            sysclk_hz=int(values["SYSCLK_HZ"]),
            ram_max_bytes=int(values["RAM_MAX_BYTES"], 0),
        )


def missing_tools() -> list[str]:
    """Programs the firmware build and run need that are not on PATH."""
    tools = ["make", "arm-none-eabi-g++", "arm-none-eabi-size", "arm-none-eabi-nm"]
    if not (os.environ.get("TINYLOC_FVP") or os.environ.get("TINYLOC_EMULATOR")):
        tools.append("qemu-system-arm")
    return [tool for tool in tools if shutil.which(tool) is None]


def require_tools() -> None:
    missing = missing_tools()
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


def deploy_skip_reason(backend: str = "tflm") -> str | None:
    """Why ``deploy`` cannot run here (missing tools or TFLM tree), or ``None`` when it can."""
    missing = missing_tools()
    if missing:
        return f"the Cortex-M toolchain / emulator is missing ({', '.join(missing)})"
    if backend == "tflm":
        try:
            tflm_root()
        except TinylocError as exc:
            return str(exc)
    return None


def tflm_library(root: Path, target: Target) -> Path:
    """Where TFLM's make puts the static library for ``target``."""
    return root / "gen" / f"cortex_m_generic_{target.tflm_arch}_default_gcc" / "lib" / "libtensorflow-microlite.a"


# --------------------------------------------------------------------------- build


@dataclass
class Build:
    """A linked firmware image and what the linker and the ELF say about it."""

    elf: Path
    target: str
    ram_kb: int
    arena_bytes: int
    sizes: dict = field(default_factory=dict)


def _make_args(gen_dir, target: Target, ram_kb: int, arena_bytes: int, build_dir, runner: str,
               runner_srcs=(), runner_cppflags: str = "", stack_bytes: int = DEFAULT_STACK_BYTES,
               heap_bytes: int = DEFAULT_HEAP_BYTES, defines=()) -> list[str]:
    args = [
        "make", "-s", "-C", str(APP_DIR), f"-j{min(os.cpu_count() or 1, 4)}",
        f"GEN_DIR={Path(gen_dir).resolve()}", f"TARGET={target.name}", f"RAM_KB={int(ram_kb)}",
        f"ARENA_BYTES={int(arena_bytes)}", f"STACK_BYTES={int(stack_bytes)}", f"HEAP_BYTES={int(heap_bytes)}",
        f"BUILD_DIR={Path(build_dir).resolve()}", f"RUNNER={runner}",
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
          heap_bytes: int = DEFAULT_HEAP_BYTES, defines=(), timeout: float = 1800.0) -> Build:
    """Compile and link the firmware; :class:`RamBudgetError` when it does not fit ``ram_kb``.

    ``defines`` are extra preprocessor names (``TINYLOC_ARENA_SEARCH`` for a probe build).
    """
    require_tools()
    spec = Target.load(target)
    if ram_kb * 1024 > spec.ram_max_bytes:
        raise TinylocError(f"--ram-kb {ram_kb} is more than the {spec.qemu_machine} board has ({spec.ram_max_bytes // 1024} KB)")
    if runner == "tflm":
        root = tflm_root()
        if not tflm_library(root, spec).is_file():
            print(f"building TFLM's library for {spec.tflm_arch} in {root} (several minutes, once)", flush=True)
    args = _make_args(gen_dir, spec, ram_kb, arena_bytes, build_dir, runner, runner_srcs, runner_cppflags,
                      stack_bytes, heap_bytes, defines)
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        overflow = re.search(r"region `RAM' overflowed by (\d+) bytes", output)
        if overflow:
            over = int(overflow.group(1))
            needed = ram_kb * 1024 + over
            rest = needed - arena_bytes - stack_bytes - heap_bytes
            raise RamBudgetError(
                f"the firmware needs {needed} bytes of RAM ({over} more than --ram-kb {ram_kb}): "
                f"tensor arena {arena_bytes} B + stack {stack_bytes} B + heap {heap_bytes} B + other .data/.bss "
                f"{rest} B; the smallest budget that links is --ram-kb {math.ceil(needed / 1024)}",
                overflow=over,
                ram_kb=ram_kb,
            )
        raise TinylocError(f"firmware build failed ({' '.join(shlex.quote(a) for a in args)}):\n{_tail(output)}")
    elf = Path(build_dir) / "firmware.elf"
    return Build(elf=elf, target=target, ram_kb=ram_kb, arena_bytes=arena_bytes, sizes=elf_sizes(elf))


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


# --------------------------------------------------------------------------- run


@dataclass
class Run:
    """What a firmware run printed: JSON records (stdout) and the TFLM log (stderr)."""

    status: int
    records: list[dict]
    log: str
    command: list[str]

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
    fvp = os.environ.get("TINYLOC_FVP")
    if fvp and target == "m55":
        # Flags of TFLM's own Corstone-300 test script, plus semihosting.
        return [fvp, "-C", "mps3_board.visualisation.disable-visualisation=1",
                "-C", "mps3_board.telnetterminal0.start_telnet=0", "-C", 'mps3_board.uart0.out_file=-',
                "-C", "mps3_board.uart0.unbuffered_output=1", "-C", "cpu0.semihosting-enable=1",
                "-a", str(elf)], "fvp"
    spec = Target.load(target)
    return ["qemu-system-arm", "-M", spec.qemu_machine, "-nographic", "-monitor", "none", "-serial", "null",
            "-semihosting-config", "enable=on,target=native", "-icount", "shift=0,align=off,sleep=off",
            "-kernel", str(elf)], "qemu"


def run(elf, target: str, timeout: float = 300.0) -> Run:
    """Run a firmware image to its end; returns its status and parsed report."""
    command, _ = emulator_command(elf, target)
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise TinylocError(f"the firmware did not finish within {timeout:.0f} s ({' '.join(command)})") from exc
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
        text += f"; this model's arena on this target is {arena_needed} bytes"
    return_needed = arena_needed if name == "arena_too_small" else None
    raise FirmwareError(text, status=result.status, name=name, needed=return_needed)


# --------------------------------------------------------------------------- deploy


def _probe_arena(gen: Path, spec: Target, build_dir: Path, stack_bytes: int, heap_bytes: int) -> tuple[int, int]:
    """Smallest TFLM arena on ``spec`` (bisected on the target) and the stack the run used."""
    probe = build(gen, spec.name, spec.ram_max_bytes // 1024, PROBE_ARENA_BYTES, build_dir, "tflm",
                  stack_bytes=stack_bytes, heap_bytes=heap_bytes, defines=["TINYLOC_ARENA_SEARCH"])
    result = run(probe.elf, spec.name)
    summary = check_run(result)
    search = next((r for r in result.records if r.get("event") == "arena_search"), None)
    if search is None:
        raise FirmwareError("the probe firmware did not report its arena search")
    return int(search["arena_min_bytes"]), int(summary["stack_used_bytes"])


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


def deploy(
    tflite_path,
    target: str = "m55",
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
) -> dict:
    """Export, build and run ``tflite_path`` on ``target`` within ``ram_kb``; the JSON report.

    ``arena_bytes`` forces the TFLM arena (default: what the probe run measured), e.g. to see
    the firmware's own too-small-arena failure. Build files go to ``out_dir`` (default: a
    temporary folder, removed afterwards).
    """
    from tinyloc_tf.deployment.export_c import export_c, load_windows

    if backend not in BACKENDS:
        raise TinylocError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    spec = Target.load(target)
    require_tools()
    if backend == "tflm":
        tflm_root()  # fail before the export when there is no TFLM
    steps = ["export", "aot compile" if backend == "aot" else "probe", "build", "run"]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(steps), desc=f"deploy {target}/{backend}", unit="step", leave=False)

    def step(name):
        if bar is not None:
            bar.set_postfix_str(name)
            bar.update(1)

    with tempfile.TemporaryDirectory(prefix="tinyloc-deploy-") as tmp:
        work = Path(out_dir) if out_dir is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        gen = work / "export"
        try:
            manifest = export_c(tflite_path, gen, data_dir=data_dir, windows=windows, crf_file=crf_file)
            step("export")

            runner, runner_srcs, runner_cppflags = backend, (), ""
            probe_arena = probe_stack = None
            if backend == "aot":
                runner_srcs, runner_cppflags = _aot_runner(Path(tflite_path), work / "aot")
            else:
                probe_arena, probe_stack = _probe_arena(gen, spec, work / "probe", stack_bytes, heap_bytes)
            step(steps[1])

            arena = int(arena_bytes) if arena_bytes is not None else int(probe_arena or 16)
            try:
                firmware = build(gen, target, ram_kb, arena, work / "build", runner, runner_srcs, runner_cppflags,
                                 stack_bytes=stack_bytes, heap_bytes=heap_bytes)
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
        finally:
            if bar is not None:
                bar.close()

        expected = load_windows(gen)
        paths = np.array([w["path"] for w in sorted(result.windows, key=lambda w: w["window"])], dtype=np.int32)
        if paths.shape != expected["host_path"].shape:
            raise FirmwareError(f"the firmware reported {len(paths)} windows, {len(expected['host_path'])} were exported")
        _, emulator = emulator_command(firmware.elf, target)
        n_windows = int(summary["windows"])
        report = {
            "model": str(tflite_path),
            "target": target,
            "board": spec.qemu_machine if emulator == "qemu" else emulator,
            "backend": backend,
            "ram_kb": int(ram_kb),
            "windows": n_windows,
            "windows_source": manifest.get("split"),
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
            "stack_used_bytes": summary["stack_used_bytes"],
            "heap_used_bytes": summary["heap_used_bytes"],
            "instructions_per_inference": summary["instructions_total"] / n_windows if n_windows else None,
            "instructions_min": summary["instructions_min"],
            "instructions_max": summary["instructions_max"],
            "init_instructions": summary["init_instructions"],
            "instructions_exact": emulator == "qemu",
            "emulator": emulator,
        }
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

