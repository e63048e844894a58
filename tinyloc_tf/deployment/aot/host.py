"""Build AOT-compiled models with the host C compiler and run them via ctypes.

Used by the tests (bit-exactness against the tflite-micro wheel) and for host
evaluation of the AOT backend. Several compiled models (with distinct symbol
prefixes) can go into one shared library, and the kernels can be compiled
once into objects that every library links.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from tinyloc_tf.deployment.aot import KERNEL_DIR, CompileReport, kernel_files
from tinyloc_tf.errors import TinylocError

# -ffp-contract=off keeps float islands free of fused multiply-adds, as TFLM's
# reference kernels compile on x86.
DEFAULT_CFLAGS = ("-std=c99", "-O2", "-fPIC", "-Wall", "-Wextra", "-ffp-contract=off")


def host_compiler() -> str:
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        raise TinylocError(
            f"C compiler {cc!r} not found; install one (Debian/Ubuntu: apt-get install gcc) "
            "or set CC"
        )
    return cc


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TinylocError(f"C build failed: {' '.join(cmd)}\n{proc.stderr.strip()}")


def compile_kernel_objects(build_dir: str | Path, cflags=DEFAULT_CFLAGS) -> list[Path]:
    """Compile the shipped kernels once into ``build_dir``; returns the objects."""
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    cc = host_compiler()
    objects = []
    for src in kernel_files():
        if src.suffix != ".c":
            continue
        obj = build_dir / (src.stem + ".o")
        _run([cc, *cflags, "-I", str(KERNEL_DIR), "-c", str(src), "-o", str(obj)])
        objects.append(obj)
    return objects


def build_shared_library(
    model_sources: list[str | Path],
    out_path: str | Path,
    *,
    kernel_objects: list[Path] | None = None,
    include_dirs: list[str | Path] = (),
    cflags=DEFAULT_CFLAGS,
) -> Path:
    """Compile generated model sources (and the kernels, unless their objects
    are given) into one shared library."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cc = host_compiler()
    incs = []
    for d in [*include_dirs, KERNEL_DIR]:
        incs += ["-I", str(d)]
    extra = [str(o) for o in kernel_objects] if kernel_objects is not None else [
        str(s) for s in kernel_files() if s.suffix == ".c"
    ]
    tmp = out_path.with_name(out_path.name + ".tmp")
    _run([cc, *cflags, "-shared", *incs, *[str(s) for s in model_sources], *extra, "-lm",
          "-o", str(tmp)])
    tmp.replace(out_path)
    return out_path


class HostModel:
    """One compiled model inside a loaded shared library."""

    def __init__(self, library: ctypes.CDLL, prefix: str, input_size: int, output_size: int,
                 input_dtype: str = "int8", output_dtype: str = "int8"):
        self._init = getattr(library, f"{prefix}runner_init")
        self._init.restype = ctypes.c_int
        # One input and one output: runner_invoke; several (a step model): runner_invoke_io.
        self._invoke = self._invoke_io = None
        try:
            self._invoke = getattr(library, f"{prefix}runner_invoke")
            self._invoke.restype = ctypes.c_int
            self._invoke.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        except AttributeError:
            self._invoke_io = getattr(library, f"{prefix}runner_invoke_io")
            self._invoke_io.restype = ctypes.c_int
            self._invoke_io.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self._arena = getattr(library, f"{prefix}runner_arena_used")
        self._arena.restype = ctypes.c_size_t
        self.input_size = int(input_size)
        self.output_size = int(output_size)
        self.input_dtype = np.dtype(input_dtype)
        self.output_dtype = np.dtype(output_dtype)
        status = self._init()
        if status != 0:
            raise TinylocError(f"{prefix}runner_init failed with status {status}")

    @property
    def arena_used(self) -> int:
        return int(self._arena())

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """One window of input values -> output values (flat; int8, or int16 for int16x8)."""
        if self._invoke is None:
            raise TinylocError("the model has several inputs or outputs: call invoke_io")
        x = np.ascontiguousarray(np.asarray(x, dtype=self.input_dtype).reshape(-1))
        if x.size != self.input_size:
            raise TinylocError(f"input has {x.size} values, the model takes {self.input_size}")
        out = np.zeros(self.output_size, dtype=self.output_dtype)
        status = self._invoke(x.ctypes.data, out.ctypes.data)
        if status != 0:
            raise TinylocError(f"runner_invoke failed with status {status}")
        return out

    def invoke_io(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> list[np.ndarray]:
        """One call of a model with several inputs and outputs (a streaming step model):
        ``outputs`` are caller arrays of the output tensors' sizes and types, filled in place."""
        if self._invoke_io is None:
            raise TinylocError("the model has one input and one output: call invoke")
        inputs = [np.ascontiguousarray(x) for x in inputs]
        if not all(o.flags.c_contiguous for o in outputs):
            raise TinylocError("invoke_io writes into contiguous output arrays")
        status = self._invoke_io((ctypes.c_void_p * len(inputs))(*[x.ctypes.data for x in inputs]),
                                 (ctypes.c_void_p * len(outputs))(*[o.ctypes.data for o in outputs]))
        if status != 0:
            raise TinylocError(f"runner_invoke_io failed with status {status}")
        return outputs

    def run(self, X: np.ndarray) -> np.ndarray:
        """Every window of ``X`` ``[N, ...]`` -> ``[N, output_size]``."""
        X = np.asarray(X, dtype=self.input_dtype).reshape(len(X), -1)
        return np.stack([self.invoke(x) for x in X]) if len(X) else np.zeros(
            (0, self.output_size), dtype=self.output_dtype)


def load_model(library_path: str | Path, report: CompileReport) -> HostModel:
    lib = ctypes.CDLL(str(Path(library_path).resolve()))
    return HostModel(
        lib,
        report.symbol_prefix,
        int(np.prod(report.input_shape)),
        int(np.prod(report.output_shape)),
        report.input_dtype,
        report.output_dtype,
    )


def build_and_load(report: CompileReport, build_dir: str | Path | None = None,
                   kernel_objects: list[Path] | None = None) -> HostModel:
    """Build one compiled model folder into a shared library and load it
    (with ready kernel objects from :func:`compile_kernel_objects`, if given)."""
    build_dir = Path(build_dir) if build_dir else Path(report.out_dir) / "host-build"
    lib = build_shared_library(
        [report.source],
        build_dir / f"lib{report.symbol_prefix}tinyloc_model.so",
        include_dirs=report.include_dirs,
        kernel_objects=kernel_objects,
    )
    return load_model(lib, report)


def check_against_tflm(tflite_path: str | Path, report: CompileReport, windows: int, seed: int = 0) -> dict:
    """Build the generated C of ``report`` on the host and compare it with the tflite-micro wheel
    on ``windows`` random calls (every input drawn over its type's range: int8, or int16 for
    int16x8): ``{"windows", "values", "equal"}``, ``equal`` counting the output values (of every
    output) the two agree on (bit-exact: ``equal == values``)."""
    from tflite_micro.python.tflite_micro import runtime

    from tinyloc_tf.deployment.aot.reader import read_tflite

    data = Path(tflite_path).read_bytes()
    graph = read_tflite(data, where=str(tflite_path))
    ins = [graph.tensors[i] for i in graph.inputs]
    outs = [graph.tensors[i] for i in graph.outputs]
    model = build_and_load(report)
    interpreter = runtime.Interpreter.from_bytes(data, arena_size=4 << 20)
    rng = np.random.default_rng(seed)
    equal = values = 0
    for _ in range(windows):
        xs = []
        for k, t in enumerate(ins):
            info = np.iinfo(t.dtype)
            xs.append(rng.integers(info.min, info.max + 1, size=t.shape, dtype=t.dtype))
            interpreter.set_input(xs[-1], k)
        interpreter.invoke()
        wants = [np.asarray(interpreter.get_output(k)).reshape(-1) for k in range(len(outs))]
        if len(ins) == len(outs) == 1:
            gots = [model.invoke(xs[0])]
        else:
            gots = model.invoke_io(xs, [np.zeros(t.size, dtype=t.dtype) for t in outs])
        for want, got in zip(wants, gots):
            equal += int((got == want).sum())
            values += int(want.size)
    return {"windows": windows, "values": values, "equal": equal}
