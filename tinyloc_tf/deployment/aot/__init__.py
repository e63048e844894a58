"""Ahead-of-time compilation of an int8 (or int16x8) ``.tflite`` model to C (no interpreter).

::

    from tinyloc_tf.deployment.aot import compile_tflite
    report = compile_tflite("model.tflite", "out/aot")
    report.arena_bytes, report.activation_bytes_total, report.sources

The output folder holds ``tinyloc_model.c/.h`` (weights as const arrays,
parameters, the memory plan and a straight-line ``runner_invoke``) and a copy
of the kernels (``tl_*.c/.h``). Together they implement the runner interface
of ``tflm_app/src/model_runner.h``::

    int    runner_init(void);
    int    runner_invoke(const int8_t* input, int8_t* output);
    size_t runner_arena_used(void);

Pipeline: :mod:`.reader` (flatbuffer -> graph) -> :mod:`.lowering` (TFLM
Prepare() maths, one kernel call per op) -> :mod:`.planner` (static arena
plan) -> :mod:`.emitter` (C source). :mod:`.host` builds the result with the
host C compiler for tests and host evaluation. See ``docs/aot.md``.
"""

from __future__ import annotations

import collections
import hashlib
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tinyloc_tf.deployment.aot.emitter import emit_sources
from tinyloc_tf.deployment.aot.int16_elementwise import LOWERINGS as INT16_ELEMENTWISE
from tinyloc_tf.deployment.aot.int16_linear import LOWERINGS as INT16_LINEAR
from tinyloc_tf.deployment.aot.lowering import LAYOUT_OPS, SUPPORTED_OPS, UnsupportedOperator, lower_graph
from tinyloc_tf.deployment.aot.planner import plan_memory
from tinyloc_tf.deployment.aot.reader import read_tflite
from tinyloc_tf.errors import TinylocError

KERNEL_DIR = Path(__file__).resolve().parent / "kernels"
# int16x8 models (int16 activations, int8 weights): TFLM's int16 kernels, reproduced.
INT16_LOWERINGS = {**INT16_LINEAR, **INT16_ELEMENTWISE}
SUPPORTED_INT16_OPS = tuple(sorted(set(INT16_LOWERINGS) | LAYOUT_OPS))
IO_TYPES = ("int8", "int16")
REPORT_NAME = "aot_report.json"

__all__ = [
    "CompileReport",
    "KERNEL_DIR",
    "SUPPORTED_INT16_OPS",
    "SUPPORTED_OPS",
    "UnsupportedOperator",
    "compile_tflite",
    "kernel_files",
]


def kernel_files() -> list[Path]:
    """The kernel sources and headers shipped with the package."""
    files = sorted(KERNEL_DIR.glob("tl_*.[ch]"))
    if not files:
        raise TinylocError(f"AOT kernel sources are missing from {KERNEL_DIR}")
    return files


@dataclass
class CompileReport:
    """What ``compile_tflite`` produced and what the memory plan achieved."""

    out_dir: str
    header: str
    source: str
    sources: list[str]  # every .c file to build (model + kernels)
    include_dirs: list[str]
    symbol_prefix: str
    tables: bool
    source_sha256: str
    operators: int
    kernel_calls: int
    op_counts: dict[str, int]
    input_shape: list[int]
    output_shape: list[int]
    input_dtype: str  # int8, or int16 for an int16x8 model
    output_dtype: str
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    arena_bytes: int  # static plan peak (input/output buffers are the caller's)
    arena_bytes_without_inplace: int  # same plan with in-place writes disabled
    arena_bytes_without_reuse: int  # one buffer per arena tensor, nothing shared
    activation_bytes_total: int  # every non-constant tensor, I/O included, one buffer each
    constant_bytes: int  # weights, biases, tables in the generated C
    views: int  # tensors that are re-labelled bytes of another (no copy)
    inplace_writes: int
    metadata_keys: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def compile_tflite(
    model: bytes | bytearray | str | Path,
    out_dir: str | Path,
    *,
    symbol_prefix: str = "",
    inplace: bool = True,
    tables: bool = True,
    alignment: int = 16,
    copy_kernels: bool = True,
) -> CompileReport:
    """Compile an int8 or int16x8 ``.tflite`` (path or bytes) into C sources in ``out_dir``.

    ``symbol_prefix`` prefixes the runner functions and file names so several
    models can live in one program. ``inplace`` lets element-wise ops write
    over a dying input; ``tables`` turns int8 LOGISTIC / TANH / SOFTMAX-exp
    into compile-time lookup tables (faster, a little more flash). Raises
    :class:`UnsupportedOperator` (a ``TinylocError``) naming the operator
    when a kernel is missing.
    """
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise TinylocError(f"model file not found: {path}")
        data = path.read_bytes()
        name = path.name
        where = str(path)
    else:
        data = bytes(model)
        name = where = "model bytes"
    if symbol_prefix and not symbol_prefix.replace("_", "a").isalnum():
        raise TinylocError(f"symbol prefix {symbol_prefix!r} must be a C identifier prefix")

    graph = read_tflite(data, where=where)
    if not graph.inputs or not graph.outputs:
        raise TinylocError(f"{name}: the model has no input or no output tensor")
    # One input and one output: runner_invoke (model_runner.h); more (a streaming step model):
    # runner_invoke_io over arrays of buffers (streaming_runner.h).
    roles = [("input", i) for i in graph.inputs] + [("output", i) for i in graph.outputs]
    for role, idx in roles:
        t = graph.tensors[idx]
        if t.dtype not in IO_TYPES or not t.is_quantized:
            raise TinylocError(
                f"{name}: the model {role} {t.describe()} must be quantized int8 or int16 "
                "(convert with int8 input and output, or int16x8)"
            )

    dynamic = [t for t in graph.tensors if any(d < 0 for d in t.shape)]
    if dynamic:
        raise TinylocError(
            f"{name}: {dynamic[0].describe()} has a dynamic dimension; convert with a fixed "
            "batch of 1 so every shape is known at compile time"
        )
    lowering = lower_graph(graph, tables=tables, int16_lowerings=INT16_LOWERINGS)
    plan = plan_memory(graph, lowering, inplace=inplace, alignment=alignment)
    plain = plan_memory(graph, lowering, inplace=False, alignment=alignment)
    no_inplace = plain.arena_bytes
    # No reuse at all: each arena tensor in its own (aligned) buffer.
    no_reuse = sum(-(-b.size // alignment) * alignment for b in plain.buffers)
    activation_total = sum(
        t.nbytes for t in graph.tensors if not t.is_constant
        and (any(t.index in op.outputs for op in graph.operators) or t.index in graph.inputs)
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sha = _sha256(data)
    # Write into a scratch folder and move the files at the end, so an error
    # never leaves a half-written model that looks complete.
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".aot-") as tmp:
        tmp = Path(tmp)
        header, source, const_bytes = emit_sources(
            graph, lowering, plan, tmp, prefix=symbol_prefix, model_name=name, source_sha256=sha
        )
        kernels = []
        if copy_kernels:
            for f in kernel_files():
                shutil.copyfile(f, tmp / f.name)
                kernels.append(f.name)
        report_path = tmp / (f"{symbol_prefix}{REPORT_NAME}")
        counts = collections.Counter(op.opcode for op in graph.operators)
        tin, tout = graph.tensors[graph.inputs[0]], graph.tensors[graph.outputs[0]]
        kernel_dir = out_dir if copy_kernels else KERNEL_DIR
        report = CompileReport(
            out_dir=str(out_dir),
            header=str(out_dir / header.name),
            source=str(out_dir / source.name),
            sources=[str(out_dir / source.name)]
            + [str(kernel_dir / k) for k in sorted(kernels or [f.name for f in kernel_files()])
               if k.endswith(".c")],
            include_dirs=sorted({str(out_dir), str(kernel_dir)}),
            symbol_prefix=symbol_prefix,
            tables=tables,
            source_sha256=sha,
            operators=len(graph.operators),
            kernel_calls=len(lowering.steps),
            op_counts=dict(sorted(counts.items())),
            input_shape=list(tin.shape),
            output_shape=list(tout.shape),
            input_dtype=tin.dtype,
            output_dtype=tout.dtype,
            input_scale=float(tin.scale),
            input_zero_point=tin.zero_point,
            output_scale=float(tout.scale),
            output_zero_point=tout.zero_point,
            arena_bytes=plan.arena_bytes,
            arena_bytes_without_inplace=no_inplace,
            arena_bytes_without_reuse=no_reuse,
            activation_bytes_total=activation_total,
            constant_bytes=const_bytes,
            views=len(lowering.aliases),
            inplace_writes=len(plan.inplace_pairs),
            metadata_keys=sorted(graph.metadata),
        )
        report_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        produced = [header.name, source.name, *kernels]
        for f in produced:
            (tmp / f).replace(out_dir / f)
        # The report goes last: its presence marks a complete compile.
        report_path.replace(out_dir / report_path.name)
    return report
