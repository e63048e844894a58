"""Write the generated C: weights, parameter structs, the memory plan and the
straight-line ``runner_invoke`` that calls the kernels in graph order."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tinyloc_tf.deployment.aot.lowering import Lowering
from tinyloc_tf.deployment.aot.planner import Location, MemoryPlan
from tinyloc_tf.deployment.aot.reader import Graph

_CTYPES = {"int8": "int8_t", "int32": "int32_t", "float32": "float", "int16": "int16_t",
           "uint8": "uint8_t", "int64": "int64_t", "bool": "uint8_t"}
_PLACEHOLDER = re.compile(r"\{T(\d+)\}|\{FAIL\}")
# File-scope statics of a generated model: arena, weights, parameters, tables.
_STATIC_NAME = re.compile(r"\btl_(?:arena|t\d+|p\d+|c\d+|lut\d+|padv\d+)\b")

# kRunnerInvokeFailed of tflm_app/src/model_runner.h: the harness exits with it.
STATUS_INVOKE_FAILED = 14


def _ctype(dtype: str) -> str:
    return _CTYPES[dtype]


def _format_values(values: np.ndarray, dtype: str, per_line: int = 16) -> str:
    flat = values.reshape(-1)
    if dtype == "float32":
        items = [f"{float(v).hex()}f" if np.isfinite(v) else ("INFINITY" if v > 0 else "-INFINITY")
                 for v in flat.astype(np.float32)]
    elif dtype == "bool":
        items = [str(int(v)) for v in flat]
    else:
        items = [str(int(v)) for v in flat]
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "    " + ",\n    ".join(lines)


def _io_base(kind: str, io: int, multi: bool) -> str:
    """The C expression of a caller buffer: ``input`` / ``output``, or ``inputs[k]`` /
    ``outputs[k]`` for a model with several inputs or outputs."""
    return f"{kind}s[{io}]" if multi else kind


def pointer_expr(graph: Graph, tensor: int, loc: Location, multi: bool = False) -> str:
    t = graph.tensors[tensor]
    ct = _ctype(t.dtype)
    if loc.kind == "arena":
        return f"(({ct}*)(void*)(tl_arena + {loc.byte_offset}))"
    if loc.kind == "const":
        base = graph.tensors[loc.const]
        elem = loc.byte_offset // base.itemsize
        name = f"tl_t{loc.const}"
        return f"({name} + {elem})" if elem else name
    # Caller buffers are int8_t* in the runner interface; an int16 tensor's bytes are cast.
    if loc.kind == "input":
        base = _io_base("input", loc.io, multi)
        if loc.byte_offset or ct != "int8_t":
            return f"((const {ct}*)(const void*)({base} + {loc.byte_offset}))"
        return base
    if loc.kind == "output":
        base = _io_base("output", loc.io, multi)
        if loc.byte_offset or ct != "int8_t":
            return f"(({ct}*)(void*)({base} + {loc.byte_offset}))"
        return base
    raise ValueError(loc.kind)


def emit_sources(
    graph: Graph,
    lowering: Lowering,
    plan: MemoryPlan,
    out_dir: Path,
    *,
    prefix: str = "",
    model_name: str = "model",
    source_sha256: str = "",
) -> tuple[Path, Path, int]:
    """Write ``<prefix>tinyloc_model.h`` and ``.c``; return their paths and the
    number of bytes of constant data (weights, biases, tables) they hold."""
    out_dir = Path(out_dir)
    base = f"{prefix}tinyloc_model"
    header = out_dir / f"{base}.h"
    source = out_dir / f"{base}.c"
    tin = graph.tensors[graph.inputs[0]]
    tout = graph.tensors[graph.outputs[0]]
    guard = re.sub(r"[^A-Za-z0-9]", "_", base).upper() + "_H_"
    macro = (prefix.upper() + "TL_MODEL") if prefix else "TL_MODEL"
    arena = max(plan.arena_bytes, 1)
    # A model with several inputs or outputs (a streaming step model: sample and state in,
    # emissions and new state out) gets runner_invoke_io over arrays of buffers.
    multi = len(graph.inputs) != 1 or len(graph.outputs) != 1
    if multi:
        io_macros = [f"#define {macro}_INPUTS {len(graph.inputs)}", f"#define {macro}_OUTPUTS {len(graph.outputs)}"]
        for kind, indices in (("INPUT", graph.inputs), ("OUTPUT", graph.outputs)):
            for k, i in enumerate(indices):
                t = graph.tensors[i]
                io_macros += [
                    f"#define {macro}_{kind}{k}_SIZE {t.size}  /* {t.dtype} values, shape {list(t.shape)} */",
                    f"#define {macro}_{kind}{k}_SCALE {float(t.scale)!r}f",
                    f"#define {macro}_{kind}{k}_ZERO_POINT {t.zero_point}",
                ]
        invoke_decl = (f"int {prefix}runner_invoke_io(const int8_t* const* inputs, int8_t* const* outputs);")
        interface = "/* The runner interface of tflm_app/src/streaming_runner.h (several inputs / outputs). */"
    else:
        io_macros = [
            f"#define {macro}_INPUT_SIZE {tin.size}   /* {tin.dtype} values, shape {list(tin.shape)} */",
            f"#define {macro}_OUTPUT_SIZE {tout.size}  /* {tout.dtype} values, shape {list(tout.shape)} */",
            f"#define {macro}_INPUT_SCALE {float(tin.scale)!r}f",
            f"#define {macro}_INPUT_ZERO_POINT {tin.zero_point}",
            f"#define {macro}_OUTPUT_SCALE {float(tout.scale)!r}f",
            f"#define {macro}_OUTPUT_ZERO_POINT {tout.zero_point}",
        ]
        invoke_decl = f"int {prefix}runner_invoke(const int8_t* input, int8_t* output);"
        interface = "/* The runner interface of tflm_app/src/model_runner.h. */"

    h = [
        f"/* {base}.h - generated by `tinyloc compile` from {model_name}.",
        f" * Source sha256 {source_sha256 or 'n/a'}. Do not edit: regenerate. */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        *io_macros,
        f"#define {macro}_ARENA_BYTES {plan.arena_bytes}",
        f"#define {macro}_STATUS_OK 0",
        f"#define {macro}_STATUS_INVOKE_FAILED {STATUS_INVOKE_FAILED}  /* kRunnerInvokeFailed */",
        "",
        interface,
        f"int {prefix}runner_init(void);",
        invoke_decl,
        f"size_t {prefix}runner_arena_used(void);",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        "",
        f"#endif /* {guard} */",
        "",
    ]
    header.write_text("\n".join(h))

    # Constants some kernel call really points at (a bias folded into a new
    # array at compile time, or a shape tensor, is not emitted).
    referenced = {int(m.group(1)) for st in lowering.steps for line in st.body
                  for m in _PLACEHOLDER.finditer(line) if m.group(1)}
    referenced.update(plan.final_copies)
    used_consts = sorted({
        plan.locations[t].const for t in referenced if plan.locations[t].kind == "const"
    })
    const_bytes = 0
    weights = []
    for i in used_consts:
        t = graph.tensors[i]
        data = np.asarray(t.data)
        const_bytes += data.nbytes
        align = max(4, t.itemsize)
        weights.append(
            f"/* {t.describe()} */\n"
            f"static const {_ctype(t.dtype)} tl_t{i}[{max(data.size, 1)}] TL_ALIGN({align}) = {{\n"
            f"{_format_values(data, t.dtype) if data.size else '    0'}\n}};"
        )
    # Tables and per-channel arrays declared by the lowering count as flash too.
    for d in lowering.decls:
        m = re.match(r"static const (u?int(8|16|32|64)_t) \w+\[(\d+)\]", d)
        if m:
            const_bytes += int(m.group(3)) * int(m.group(2)) // 8

    def substitute(line: str) -> str:
        def repl(m: re.Match) -> str:
            if m.group(0) == "{FAIL}":
                return f"{macro}_STATUS_INVOKE_FAILED"
            idx = int(m.group(1))
            return pointer_expr(graph, idx, plan.locations[idx], multi)

        return _PLACEHOLDER.sub(repl, line)

    body = []
    for s in lowering.steps:
        body.append(f"  /* operator {s.op_index}: {s.opcode} */")
        body.extend(f"  {substitute(line)}" for line in s.body)
    for final_copy in plan.final_copies:
        src = pointer_expr(graph, final_copy, plan.locations[final_copy], multi)
        position = list(graph.outputs).index(final_copy)
        body.append("  /* the output tensor is a view of another tensor: copy it out */")
        body.append(f"  memcpy({_io_base('output', position, multi)}, {src}, {graph.tensors[final_copy].nbytes});")

    c = [
        f"/* {base}.c - generated by `tinyloc compile` from {model_name}.",
        f" * Source sha256 {source_sha256 or 'n/a'}. Do not edit: regenerate.",
        " *",
        f" * {len(graph.operators)} operators, {len(lowering.steps)} kernel calls; arena "
        f"{plan.arena_bytes} bytes (static plan), constants {const_bytes} bytes. */",
        "#include <math.h>",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "#include <string.h>",
        "",
        '#include "tl_kernels.h"',
        f'#include "{base}.h"',
        "",
        "#if defined(__GNUC__)",
        "#define TL_ALIGN(n) __attribute__((aligned(n)))",
        "#else",
        "#define TL_ALIGN(n)",
        "#endif",
        "",
        "/* Activations, at the offsets of the static memory plan. */",
        f"static uint8_t tl_arena[{arena}] TL_ALIGN(16);",
        "",
        "/* ---- constant tensors ---- */",
        *weights,
        "",
        "/* ---- kernel parameters (what TFLM's Prepare() would compute) ---- */",
        *lowering.decls,
        "",
        f"int {prefix}runner_init(void) {{",
        "  /* Everything was prepared at compile time. */",
        f"  return {macro}_STATUS_OK;",
        "}",
        "",
        f"size_t {prefix}runner_arena_used(void) {{ return {macro}_ARENA_BYTES; }}",
        "",
        invoke_decl[:-1] + " {",
        "  (void)tl_arena;",
        *body,
        "  (void)inputs;" if multi else "  (void)input;",
        "  (void)outputs;" if multi else "  (void)output;",
        f"  return {macro}_STATUS_OK;",
        "}",
        "",
    ]
    text = "\n".join(c)
    if prefix:
        # File-scope names carry the prefix too, so several models can even
        # share one translation unit.
        text = _STATIC_NAME.sub(lambda m: prefix + m.group(0), text)
    source.write_text(text)
    return header, source, const_bytes
