"""Lower each TFLite operator to a call into the project's C kernels.

For every operator this module does what TFLM's Prepare() does (check types,
compute multipliers, shifts, activation ranges, padding, lookup tables,
broadcast strides) and records the result as a const parameter struct plus a
C statement. Pure re-labellings (RESHAPE and contiguous slices) become
aliases of their input instead of copies.

Statements refer to tensors through ``{T<index>}`` placeholders; the emitter
replaces them with pointers once the memory plan is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from tinyloc_tf.deployment.aot import fixedpoint, quant
from tinyloc_tf.deployment.aot.reader import Graph, Operator, Tensor
from tinyloc_tf.errors import TinylocError

MAX_DIMS = 6


@dataclass
class Step:
    """One kernel call of the generated code."""

    op_index: int
    opcode: str
    body: list[str]
    reads: list[int]
    writes: list[int]
    # (output, input) pairs whose memory may be shared: the kernel reads
    # element i of that input before it writes element i of the output.
    inplace: list[tuple[int, int]] = field(default_factory=list)
    can_fail: bool = False


@dataclass
class Alias:
    """Tensor ``tensor`` is the bytes of ``source`` starting at ``byte_offset``."""

    tensor: int
    source: int
    byte_offset: int


class UnsupportedOperator(TinylocError):
    """The model uses an operator (or a variant of one) with no AOT kernel."""


class Lowering:
    """Collects parameter declarations, kernel calls and aliases.

    ``tables``: evaluate int8 LOGISTIC / TANH on all 256 inputs at compile time
    and SOFTMAX's exp on all 256 differences, and emit lookup tables (faster;
    256 B or 1 KB of flash each) instead of the fixed-point kernels.
    """

    def __init__(self, graph: Graph, tables: bool = True):
        self.graph = graph
        self.tables = tables
        self.decls: list[str] = []
        self.steps: list[Step] = []
        self.aliases: list[Alias] = []
        self._counter = 0
        self.op: Operator | None = None

    # -- helpers for the op lowerings ------------------------------------
    def t(self, index: int) -> Tensor:
        return self.graph.tensors[index]

    def fail(self, message: str) -> UnsupportedOperator:
        op = self.op
        where = f"operator {op.index} ({op.opcode})" if op else "model"
        return UnsupportedOperator(f"{where}: {message}")

    def _name(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def struct(self, ctype: str, fields: dict) -> str:
        """Declare ``static const ctype name = {.field = value, ...}``."""
        name = self._name("tl_p")
        parts = [f"    .{k} = {_c_value(v)}" for k, v in fields.items()]
        self.decls.append(f"static const {ctype} {name} = {{\n" + ",\n".join(parts) + "\n};")
        return name

    def int32_array(self, values) -> str:
        name = self._name("tl_c")
        vals = [int(v) for v in values]
        rows = [", ".join(map(str, vals[i : i + 8])) for i in range(0, len(vals), 8)]
        self.decls.append(
            f"static const int32_t {name}[{len(vals)}] = {{" + ",\n    ".join(rows) + "};"
        )
        return name

    def int8_table(self, values) -> str:
        name = self._name("tl_lut")
        vals = [int(v) for v in values]
        rows = [", ".join(f"{v:4d}" for v in vals[i : i + 16]) for i in range(0, len(vals), 16)]
        self.decls.append(
            f"static const int8_t {name}[{len(vals)}] = {{\n    " + ",\n    ".join(rows) + "\n};"
        )
        return name

    def emit(self, body: list[str] | str, reads, writes, inplace=(), can_fail=False):
        op = self.op
        body = [body] if isinstance(body, str) else list(body)
        self.steps.append(
            Step(
                op_index=op.index,
                opcode=op.opcode,
                body=body,
                reads=[int(r) for r in reads if r >= 0],
                writes=[int(w) for w in writes],
                inplace=list(inplace),
                can_fail=can_fail,
            )
        )

    def alias(self, tensor: int, source: int, byte_offset: int = 0):
        self.aliases.append(Alias(tensor, source, byte_offset))


def _c_value(v) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (list, tuple, np.ndarray)):
        return "{" + ", ".join(_c_value(x) for x in v) + "}"
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(int(v))


def _c_float(x: np.float32) -> str:
    """Exact C literal of a float32 value."""
    return f"{float(np.float32(x)).hex()}f"


def _c_double(x: float) -> str:
    return float(x).hex()


def _dense_strides(shape) -> list[int]:
    strides = [1] * len(shape)
    for i in range(len(shape) - 2, -1, -1):
        strides[i] = strides[i + 1] * int(shape[i + 1])
    return strides


def _merge_dims(dims: list[list[int]]) -> list[list[int]]:
    """Merge adjacent axes [size, stride_a, stride_b, ...] that are contiguous
    for every operand; drop size-1 axes. Keeps at least one axis."""
    out: list[list[int]] = []
    for d in dims:
        if d[0] == 1:
            continue
        if out and all(prev == cur * d[0] for prev, cur in zip(out[-1][1:], d[1:])):
            out[-1] = [out[-1][0] * d[0]] + d[1:]
        else:
            out.append(list(d))
    if not out:
        out = [[1] + [0] * (len(dims[0]) - 1 if dims else 2)]
    return out


def broadcast_desc(shape1, shape2, out_shape) -> dict:
    """tl_broadcast fields for two inputs broadcast to a dense output."""
    r = len(out_shape)
    if len(shape1) > r or len(shape2) > r:
        raise TinylocError(f"cannot broadcast {list(shape1)} and {list(shape2)} to {list(out_shape)}")
    s1 = (1,) * (r - len(shape1)) + tuple(shape1)
    s2 = (1,) * (r - len(shape2)) + tuple(shape2)
    d1, d2 = _dense_strides(s1), _dense_strides(s2)
    dims = []
    for i in range(r):
        n = int(out_shape[i])
        for s in (s1, s2):
            if s[i] not in (1, n):
                raise TinylocError(
                    f"cannot broadcast {list(shape1)} and {list(shape2)} to {list(out_shape)}"
                )
        dims.append([n, 0 if s1[i] == 1 else d1[i], 0 if s2[i] == 1 else d2[i]])
    merged = _merge_dims(dims) if dims else [[1, 0, 0]]
    if len(merged) > MAX_DIMS:
        raise TinylocError(f"broadcast over more than {MAX_DIMS} axes")
    return {
        "ndim": len(merged),
        "shape": [d[0] for d in merged],
        "strides1": [d[1] for d in merged],
        "strides2": [d[2] for d in merged],
    }


def copy_desc(shape, src_strides, dst_strides) -> dict:
    dims = [[int(n), int(a), int(b)] for n, a, b in zip(shape, src_strides, dst_strides)]
    merged = _merge_dims(dims) if dims else [[1, 0, 0]]
    if len(merged) > MAX_DIMS:
        raise TinylocError(f"copy over more than {MAX_DIMS} axes")
    return {
        "ndim": len(merged),
        "shape": [d[0] for d in merged],
        "src_strides": [d[1] for d in merged],
        "dst_strides": [d[2] for d in merged],
    }


# ---------------------------------------------------------------------------
# checks shared by the lowerings

def require_type(L: Lowering, dtype: str, *indices: int):
    """Each tensor is quantized ``dtype`` (the kernel's element type), or the op fails."""
    for i in indices:
        t = L.t(i)
        if t.dtype != dtype:
            raise L.fail(f"{t.describe()} must be {dtype} (no AOT kernel for {t.dtype})")
        if not t.is_quantized:
            raise L.fail(f"{t.describe()} has no quantization parameters")


def require_zero_point_zero(L: Lowering, *indices: int):
    """Each tensor has zero point 0, as TFLM's int16 kernels require, or the op fails."""
    for i in indices:
        if L.t(i).zero_point != 0:
            raise L.fail(f"{L.t(i).describe()} must have zero point 0 (TFLM requires it for int16)")


def _require_int8(L: Lowering, *indices: int):
    require_type(L, "int8", *indices)


def _const(L: Lowering, index: int, what: str) -> np.ndarray:
    t = L.t(index)
    if t.data is None:
        raise L.fail(f"{what} ({t.describe()}) must be a constant tensor")
    return t.data


def _activation(op: Operator) -> int:
    return int(getattr(op.options, "fusedActivationFunction", 0) or 0) if op.options else 0


def _is_float(L: Lowering, index: int) -> bool:
    return L.t(index).dtype == "float32"


# ---------------------------------------------------------------------------
# element-wise binary ops

def _binary_float(L: Lowering, op: Operator, kind: str, act: int | None):
    a, b = op.inputs[:2]
    out = op.outputs[0]
    for i in (a, b, out):
        if L.t(i).dtype != "float32":
            raise L.fail(f"mixed float/{L.t(i).dtype} operands are not supported")
    lo, hi = quant.activation_range_float(act) if act is not None else (-math.inf, math.inf)
    bc = L.struct("tl_broadcast", broadcast_desc(L.t(a).shape, L.t(b).shape, L.t(out).shape))
    lo_c = "-INFINITY" if lo == -math.inf else _c_float(np.float32(lo))
    hi_c = "INFINITY" if hi == math.inf else _c_float(np.float32(hi))
    L.emit(
        f"tl_binary_f32(TL_BINARY_F32_{kind}, {lo_c}, {hi_c}, &{bc}, {{T{a}}}, {{T{b}}}, {{T{out}}});",
        [a, b],
        [out],
        inplace=_binary_inplace(L, a, b, out),
    )


def _binary_inplace(L: Lowering, a: int, b: int, out: int) -> list[tuple[int, int]]:
    pairs = []
    for i in (a, b):
        if L.t(i).shape == L.t(out).shape and L.t(i).itemsize == L.t(out).itemsize:
            pairs.append((out, i))
    return pairs


def _add_sub_params(L: Lowering, op: Operator, is_sub: bool) -> dict:
    a, b = op.inputs[:2]
    out = op.outputs[0]
    _require_int8(L, a, b, out)
    s1, s2, so = L.t(a).scale, L.t(b).scale, L.t(out).scale
    left_shift = 20
    if is_sub:
        # sub_common.cc computes the ratios in float before widening.
        twice_max = quant.F32(2) * max(s1, s2)
        r1 = float(s1 / twice_max)
        r2 = float(s2 / twice_max)
        ro = float(twice_max / (quant.F32(1 << left_shift) * so))
    else:
        twice_max = 2.0 * float(max(s1, s2))
        r1 = float(s1) / twice_max
        r2 = float(s2) / twice_max
        ro = twice_max / ((1 << left_shift) * float(so))
    lo, hi = quant.activation_range(_activation(op), so, L.t(out).zero_point)
    return _rescaled_pair_params(L, a, b, out, r1, r2, quant.quantize_multiplier_smaller_than_one(ro),
                                 left_shift, lo, hi)


def _rescaled_pair_params(L: Lowering, a: int, b: int, out: int, r1: float, r2: float, output: tuple[int, int],
                          left_shift: int, lo: int, hi: int) -> dict:
    """``tl_add_params`` of a two-input op that rescales both inputs by ``r1``, ``r2`` (each
    below one) after ``left_shift``, and the result by ``output = (multiplier, shift)``."""
    m1, sh1 = quant.quantize_multiplier_smaller_than_one(r1)
    m2, sh2 = quant.quantize_multiplier_smaller_than_one(r2)
    return {
        "input1_offset": -L.t(a).zero_point,
        "input2_offset": -L.t(b).zero_point,
        "output_offset": L.t(out).zero_point,
        "input1_multiplier": m1,
        "input2_multiplier": m2,
        "output_multiplier": output[0],
        "input1_shift": sh1,
        "input2_shift": sh2,
        "output_shift": output[1],
        "left_shift": left_shift,
        "act_min": lo,
        "act_max": hi,
    }


def _emit_binary(L: Lowering, kernel: str, params_type: str, params: dict, a: int, b: int, out: int) -> None:
    """``kernel(&params, &broadcast, a, b, out)`` for an int8 two-input op with broadcasting."""
    p = L.struct(params_type, params)
    bc = L.struct("tl_broadcast", broadcast_desc(L.t(a).shape, L.t(b).shape, L.t(out).shape))
    L.emit(f"{kernel}(&{p}, &{bc}, {{T{a}}}, {{T{b}}}, {{T{out}}});", [a, b], [out],
           inplace=_binary_inplace(L, a, b, out))


def _lower_add_sub(L: Lowering, op: Operator, name: str):
    """ADD and SUB share their kernel parameters; ``name`` is "ADD" or "SUB"."""
    if _is_float(L, op.inputs[0]):
        return _binary_float(L, op, name, _activation(op))
    a, b = op.inputs[:2]
    out = op.outputs[0]
    _emit_binary(L, f"tl_{name.lower()}_s8", "tl_add_params", _add_sub_params(L, op, is_sub=name == "SUB"), a, b, out)


def lower_add(L: Lowering, op: Operator):
    return _lower_add_sub(L, op, "ADD")


def lower_sub(L: Lowering, op: Operator):
    return _lower_add_sub(L, op, "SUB")


def lower_squared_difference(L: Lowering, op: Operator):
    if _is_float(L, op.inputs[0]):
        return _binary_float(L, op, "SQUARED_DIFFERENCE", None)
    a, b = op.inputs[:2]
    out = op.outputs[0]
    _require_int8(L, a, b, out)
    s1, s2, so = L.t(a).scale, L.t(b).scale, L.t(out).scale
    left_shift = 7
    twice_max = 2.0 * float(max(s1, s2))
    r1 = float(s1) / twice_max
    r2 = float(s2) / twice_max
    ro = (twice_max * twice_max) / float(quant.F32(1 << (left_shift * 2)) * so)
    params = _rescaled_pair_params(L, a, b, out, r1, r2, quant.quantize_multiplier(ro), left_shift, -128, 127)
    _emit_binary(L, "tl_squared_difference_s8", "tl_add_params", params, a, b, out)


def lower_mul(L: Lowering, op: Operator):
    if _is_float(L, op.inputs[0]):
        return _binary_float(L, op, "MUL", _activation(op))
    a, b = op.inputs[:2]
    out = op.outputs[0]
    _require_int8(L, a, b, out)
    real = float(L.t(a).scale) * float(L.t(b).scale) / float(L.t(out).scale)
    m, sh = quant.quantize_multiplier(real)
    lo, hi = quant.activation_range(_activation(op), L.t(out).scale, L.t(out).zero_point)
    params = {
        "input1_offset": -L.t(a).zero_point,
        "input2_offset": -L.t(b).zero_point,
        "output_offset": L.t(out).zero_point,
        "output_multiplier": m,
        "output_shift": sh,
        "act_min": lo,
        "act_max": hi,
    }
    _emit_binary(L, "tl_mul_s8", "tl_mul_params", params, a, b, out)


def lower_div(L: Lowering, op: Operator):
    if _is_float(L, op.inputs[0]):
        return _binary_float(L, op, "DIV", _activation(op))
    raise L.fail("int8 DIV has no AOT kernel; only float DIV is supported")


def _lower_max_min(L: Lowering, op: Operator, which: str):
    if _is_float(L, op.inputs[0]):
        return _binary_float(L, op, which.upper(), 0)
    a, b = op.inputs[:2]
    out = op.outputs[0]
    for i in (a, b, out):
        if L.t(i).dtype != "int8":
            raise L.fail(f"{L.t(i).describe()} must be int8 or float32")
    bc = L.struct("tl_broadcast", broadcast_desc(L.t(a).shape, L.t(b).shape, L.t(out).shape))
    L.emit(f"tl_{which}_s8(&{bc}, {{T{a}}}, {{T{b}}}, {{T{out}}});", [a, b], [out],
           inplace=_binary_inplace(L, a, b, out))


def lower_maximum(L: Lowering, op: Operator):
    _lower_max_min(L, op, "maximum")


def lower_minimum(L: Lowering, op: Operator):
    _lower_max_min(L, op, "minimum")


# ---------------------------------------------------------------------------
# element-wise unary ops

def _unary_float(L: Lowering, op: Operator, kind: str):
    x, out = op.inputs[0], op.outputs[0]
    if L.t(out).dtype != "float32":
        raise L.fail(f"float {op.opcode} with {L.t(out).dtype} output is not supported")
    L.emit(f"tl_unary_f32(TL_UNARY_F32_{kind}, {L.t(out).size}, {{T{x}}}, {{T{out}}});",
           [x], [out], inplace=[(out, x)])


def _sigmoid_struct(L: Lowering, x: int) -> str:
    m, ls, radius = quant.sigmoid_input_params(L.t(x).scale)
    return L.struct("tl_sigmoid_params", {
        "input_zero_point": L.t(x).zero_point,
        "input_range_radius": radius,
        "input_multiplier": m,
        "input_left_shift": ls,
    })


def _lower_sigmoid(L: Lowering, op: Operator, kind: str):
    x, out = op.inputs[0], op.outputs[0]
    if _is_float(L, x):
        return _unary_float(L, op, kind.upper())
    _require_int8(L, x, out)
    if kind == "logistic" and L.t(out).zero_point != -128:
        raise L.fail(f"int8 LOGISTIC needs output zero point -128, got {L.t(out).zero_point}")
    if L.tables:
        m, ls, radius = quant.sigmoid_input_params(L.t(x).scale)
        table = fixedpoint.sigmoid_table(kind, L.t(x).zero_point, radius, m, ls)
        name = L.int8_table(table)
        L.emit(f"tl_lut_s8({name}, {L.t(x).size}, {{T{x}}}, {{T{out}}});", [x], [out],
               inplace=[(out, x)])
        return
    p = _sigmoid_struct(L, x)
    L.emit(f"tl_{kind}_s8(&{p}, {L.t(x).size}, {{T{x}}}, {{T{out}}});", [x], [out],
           inplace=[(out, x)])


def lower_logistic(L: Lowering, op: Operator):
    _lower_sigmoid(L, op, "logistic")


def lower_tanh(L: Lowering, op: Operator):
    _lower_sigmoid(L, op, "tanh")


def _expf(values: np.ndarray) -> np.ndarray:
    """expf as the C library computes it (TFLM builds its tables with it);
    falls back to the correctly rounded value when libm cannot be loaded."""
    expf = quant.libm_function("expf")
    if expf:
        return np.array([expf(float(v)) for v in values], dtype=np.float32)
    return np.exp(values.astype(np.float64)).astype(np.float32)


def elu_table(in_scale: np.float32, in_zp: int, out_scale: np.float32, out_zp: int) -> np.ndarray:
    """ELU int8 lookup table exactly as elu.cc's PopulateLookupTable builds it
    (float32 arithmetic), indexed by the input's bit pattern (uint8)."""
    vals = np.arange(-128, 128, dtype=np.int32)
    dequantized = np.float32(in_scale) * (vals - np.int32(in_zp)).astype(np.float32)
    neg = dequantized < np.float32(0)
    transformed = dequantized.copy()
    transformed[neg] = _expf(dequantized[neg]) - np.float32(1.0)
    inverse_scale = np.float32(1) / np.float32(out_scale)
    scaled = (transformed * inverse_scale).astype(np.float32)
    rescaled = np.array([quant.c_round(float(v)) for v in scaled], dtype=np.float32)
    quantized = (rescaled + np.float32(out_zp)).astype(np.float32)
    q = np.clip(np.trunc(quantized).astype(np.int64), -128, 127)
    table = np.zeros(256, dtype=np.int8)
    table[vals.astype(np.uint8)] = q.astype(np.int8)
    return table


def lower_elu(L: Lowering, op: Operator):
    x, out = op.inputs[0], op.outputs[0]
    if _is_float(L, x):
        return _unary_float(L, op, "ELU")
    _require_int8(L, x, out)
    table = elu_table(L.t(x).scale, L.t(x).zero_point, L.t(out).scale, L.t(out).zero_point)
    name = L.int8_table(table)
    L.emit(f"tl_lut_s8({name}, {L.t(x).size}, {{T{x}}}, {{T{out}}});", [x], [out],
           inplace=[(out, x)])


def lower_rsqrt(L: Lowering, op: Operator):
    x, out = op.inputs[0], op.outputs[0]
    if _is_float(L, x):
        return _unary_float(L, op, "RSQRT")
    _require_int8(L, x, out)
    si, so = L.t(x).scale, L.t(out).scale
    real = 1.0 / float(np.sqrt(si, dtype=np.float32) * so)
    m, sh = quant.quantize_multiplier(real)
    p = L.struct("tl_rsqrt_params", {
        "input_offset": L.t(x).zero_point,
        "output_offset": L.t(out).zero_point,
        "multiplier": m,
        "shift": sh,
    })
    L.emit(
        [f"if (tl_rsqrt_s8(&{p}, {L.t(x).size}, {{T{x}}}, {{T{out}}}) != TL_OK) return {{FAIL}};"],
        [x], [out], inplace=[(out, x)], can_fail=True,
    )


def lower_l2_normalization(L: Lowering, op: Operator):
    x, out = op.inputs[0], op.outputs[0]
    if _is_float(L, x):
        raise L.fail("float L2_NORMALIZATION is not supported; convert it to int8")
    _require_int8(L, x, out)
    if _activation(op):
        raise L.fail("L2_NORMALIZATION with a fused activation (TFLM refuses it too)")
    tx = L.t(x)
    depth = int(tx.shape[-1]) if tx.shape else 1
    L.emit(f"tl_l2norm_s8({tx.size // depth}, {depth}, {tx.zero_point}, {{T{x}}}, {{T{out}}});", [x], [out])


def _float_only(kind: str):
    def lower(L: Lowering, op: Operator):
        if not _is_float(L, op.inputs[0]):
            raise L.fail(f"{op.opcode} on {L.t(op.inputs[0]).dtype} has no kernel in TFLM either")
        _unary_float(L, op, kind)

    return lower


def lower_relu(L: Lowering, op: Operator):
    x, out = op.inputs[0], op.outputs[0]
    if _is_float(L, x):
        return _unary_float(L, op, "RELU")
    _require_int8(L, x, out)
    zp = L.t(out).zero_point
    act_min = max(-128, zp + int(quant.c_round(float(np.float32(0.0) / L.t(out).scale))))
    _emit_requantize(L, x, out, float(L.t(x).scale / L.t(out).scale), act_min)


def _emit_requantize(L: Lowering, x: int, out: int, real: float, act_min: int = -128) -> None:
    """int8 ``out = clamp(zp_out + (x - zp_x) * real, act_min, 127)``, in place when possible."""
    m, sh = quant.quantize_multiplier(real)
    p = L.struct("tl_requant_params", {
        "input_zero_point": L.t(x).zero_point,
        "output_zero_point": L.t(out).zero_point,
        "multiplier": m,
        "shift": sh,
        "act_min": act_min,
        "act_max": 127,
    })
    L.emit(f"tl_requantize_s8(&{p}, {L.t(x).size}, {{T{x}}}, {{T{out}}});", [x], [out],
           inplace=[(out, x)])


def lower_quantize(L: Lowering, op: Operator):
    x, out = op.inputs[0], op.outputs[0]
    tx, to = L.t(x), L.t(out)
    if to.dtype != "int8" or not to.is_quantized:
        raise L.fail(f"QUANTIZE to {to.dtype} is not supported (int8 only)")
    if len(to.scales) != 1:
        raise L.fail("per-channel QUANTIZE output is not supported (TFLM neither)")
    if tx.dtype == "float32":
        L.emit(
            f"tl_quantize_f32_s8({to.zero_point}, {_c_float(to.scale)}, {to.size}, {{T{x}}}, {{T{out}}});",
            [x], [out],
        )
        return
    _require_int8(L, x)
    _emit_requantize(L, x, out, float(tx.scale) / float(to.scale))


def lower_dequantize(L: Lowering, op: Operator):
    x, out = op.inputs[0], op.outputs[0]
    tx, to = L.t(x), L.t(out)
    if tx.dtype != "int8" or to.dtype != "float32":
        raise L.fail(f"DEQUANTIZE {tx.dtype} -> {to.dtype} is not supported (int8 -> float32 only)")
    if len(tx.scales) != 1:
        raise L.fail("per-channel DEQUANTIZE is not supported")
    L.emit(
        f"tl_dequantize_s8_f32({tx.zero_point}, {_c_double(float(tx.scale))}, {tx.size}, {{T{x}}}, {{T{out}}});",
        [x], [out],
    )


def lower_softmax(L: Lowering, op: Operator):
    x, out = op.inputs[0], op.outputs[0]
    tx, to = L.t(x), L.t(out)
    if tx.dtype == "float32":
        raise L.fail("float SOFTMAX is not supported; convert it to int8")
    _require_int8(L, x, out)
    if to.zero_point != -128 or to.scale != np.float32(1.0 / 256):
        raise L.fail("int8 SOFTMAX needs output scale 1/256 and zero point -128 (as TFLM)")
    beta = float(getattr(op.options, "beta", 1.0)) if op.options else 1.0
    m, ls, diff_min = quant.softmax_params(beta, tx.scale)
    depth = int(tx.shape[-1]) if tx.shape else 1
    exp_table = "NULL"
    if L.tables:
        exp_table = L.int32_array(fixedpoint.softmax_exp_table(m, ls, diff_min))
    p = L.struct("tl_softmax_params", {
        "outer_size": tx.size // depth,
        "depth": depth,
        "input_multiplier": m,
        "input_left_shift": ls,
        "diff_min": diff_min,
        "exp_table": exp_table,
    })
    L.emit(f"tl_softmax_s8(&{p}, {{T{x}}}, {{T{out}}});", [x], [out], inplace=[(out, x)])


# ---------------------------------------------------------------------------
# linear algebra

def _per_channel_multipliers(L: Lowering, x: int, w: int, out: int, channels: int):
    """PopulateConvolutionQuantizationParams: one multiplier per channel."""
    tw = L.t(w)
    si, so = float(L.t(x).scale), float(L.t(out).scale)
    per_channel = len(tw.scales) > 1
    if per_channel and len(tw.scales) != channels:
        raise L.fail(f"{tw.describe()} has {len(tw.scales)} scales for {channels} channels")
    mults, shifts = [], []
    for c in range(channels):
        sw = float(np.float32(tw.scales[c] if per_channel else tw.scales[0]))
        m, sh = quant.quantize_multiplier(si * sw / so)
        mults.append(m)
        shifts.append(sh)
    return mults, shifts


def _fold_input_offset(L: Lowering, w: int, bias: int, input_offset: int, reduce_axes) -> str | None:
    """Bias with ``input_offset * sum(weights)`` folded in, as an int32 array name.

    sum_d w*(x + o) = sum_d w*x + o*sum_d w holds exactly in the kernels'
    wrapping int32 arithmetic, so with constant weights the inner loop can
    drop the offset. Returns None when the weights are not constant."""
    tw = L.t(w)
    if tw.data is None or input_offset == 0:
        return None
    if bias >= 0 and L.t(bias).data is None:
        return None
    sums = np.asarray(tw.data, dtype=np.int64).sum(axis=reduce_axes)
    base = np.asarray(L.t(bias).data, dtype=np.int64) if bias >= 0 else np.zeros_like(sums)
    folded = base + int(input_offset) * sums
    folded = ((folded + (1 << 31)) % (1 << 32)) - (1 << 31)  # int32 wrap, as the kernel's adds
    return L.int32_array(folded.reshape(-1))


def fully_connected_fields(L: Lowering, op: Operator) -> tuple[dict, list[int]]:
    """The ``tl_fc_params`` fields of CalculateOpDataFullyConnected that int8 and int16 share
    (sizes, per-tensor or per-channel multipliers with TFLM's bias-scale check, the weight
    offset), and the shifts; the caller adds the input / output offsets and the activation
    range."""
    x, w = op.inputs[:2]
    bias = op.inputs[2] if len(op.inputs) > 2 else -1
    out = op.outputs[0]
    if op.options is not None and int(getattr(op.options, "weightsFormat", 0) or 0) != 0:
        raise L.fail("shuffled FULLY_CONNECTED weights are not supported")
    tx, tw, to = L.t(x), L.t(w), L.t(out)
    output_depth = int(to.shape[-1])
    accum_depth = int(tw.shape[-1])
    batches = to.size // output_depth
    if batches * accum_depth != tx.size:
        raise L.fail(f"input of {tx.size} values does not match {batches} x {accum_depth}")
    per_channel = len(tw.scales) > 1
    if per_channel:
        mults, shifts = _per_channel_multipliers(L, x, w, out, output_depth)
        filter_offset = 0  # the per-channel kernel ignores weight zero points
    else:
        product = float(tx.scale * tw.scale)  # float product, then double
        if bias >= 0 and L.t(bias).is_quantized:
            diff = abs(product - float(L.t(bias).scale))
            if diff / float(to.scale) > 0.02:
                raise L.fail("bias scale differs from input*filter scale (TFLM rejects this model)")
        m, sh = quant.quantize_multiplier(product / float(to.scale))
        mults, shifts = [m], [sh]
        filter_offset = -tw.zero_point
    return {
        "batches": batches,
        "output_depth": output_depth,
        "accum_depth": accum_depth,
        "filter_offset": filter_offset,
        "per_channel": 1 if per_channel else 0,
        "output_multiplier": L.int32_array(mults),
        "output_shift": L.int32_array(shifts),
    }, shifts


def lower_fully_connected(L: Lowering, op: Operator):
    x, w = op.inputs[:2]
    bias = op.inputs[2] if len(op.inputs) > 2 else -1
    out = op.outputs[0]
    if _is_float(L, x):
        raise L.fail("float FULLY_CONNECTED is not supported; convert it to int8")
    _require_int8(L, x, w, out)
    tx, to = L.t(x), L.t(out)
    if bias >= 0 and L.t(bias).dtype != "int32":
        raise L.fail(f"bias {L.t(bias).describe()} must be int32")
    fields, _ = fully_connected_fields(L, op)
    lo, hi = quant.activation_range(_activation(op), to.scale, to.zero_point)
    input_offset = -tx.zero_point
    b = f"{{T{bias}}}" if bias >= 0 else "NULL"
    if fields["filter_offset"] == 0:
        folded = _fold_input_offset(L, w, bias, input_offset, reduce_axes=1)
        if folded is not None:
            b, input_offset = folded, 0
    p = L.struct("tl_fc_params", {
        **fields,
        "input_offset": input_offset,
        "output_offset": to.zero_point,
        "act_min": lo,
        "act_max": hi,
    })
    L.emit(f"tl_fully_connected_s8(&{p}, {{T{x}}}, {{T{w}}}, {b}, {{T{out}}});",
           [x, w, bias], [out])


def _conv_geometry(L: Lowering, op: Operator, in_h, in_w, f_h, f_w, out_h, out_w):
    o = op.options
    stride_h, stride_w = int(o.strideH), int(o.strideW)
    dil_h = int(getattr(o, "dilationHFactor", 1) or 1)
    dil_w = int(getattr(o, "dilationWFactor", 1) or 1)
    padding = int(o.padding)  # 0 SAME, 1 VALID

    def out_size(n, f, s, d):
        eff = (f - 1) * d + 1
        return (n + s - 1) // s if padding == 0 else (n + s - eff) // s

    def pad(n, f, s, d, o_n):
        eff = (f - 1) * d + 1
        total = max(0, (o_n - 1) * s + eff - n)
        return total // 2

    oh, ow = out_size(in_h, f_h, stride_h, dil_h), out_size(in_w, f_w, stride_w, dil_w)
    if (oh, ow) != (out_h, out_w):
        raise L.fail(f"output {out_h}x{out_w} does not match the computed {oh}x{ow}")
    return {
        "stride_height": stride_h,
        "stride_width": stride_w,
        "dilation_height": dil_h,
        "dilation_width": dil_w,
        "pad_height": pad(in_h, f_h, stride_h, dil_h, oh),
        "pad_width": pad(in_w, f_w, stride_w, dil_w, ow),
    }


def _conv_operands(L: Lowering, op: Operator, name: str):
    """``(x, w, bias, out)`` of an int8 CONV_2D / DEPTHWISE_CONV_2D (bias -1 when absent)
    and their tensors, after the checks both share."""
    x, w = op.inputs[:2]
    bias = op.inputs[2] if len(op.inputs) > 2 else -1
    out = op.outputs[0]
    if _is_float(L, x):
        raise L.fail(f"float {name} is not supported; convert it to int8")
    _require_int8(L, x, w, out)
    tx, tw, to = L.t(x), L.t(w), L.t(out)
    if len(tx.shape) != 4 or len(tw.shape) != 4 or len(to.shape) != 4:
        raise L.fail(f"{name} needs 4-D input, filter and output")
    return (x, w, bias, out), (tx, tw, to)


def _emit_convolution(L: Lowering, op: Operator, operands, fields: dict, channels: int,
                      reduce_axes: tuple, struct: str, kernel: str) -> None:
    """The requantization, input-offset folding and kernel call both convolutions share."""
    x, w, bias, out = operands
    tx, to = L.t(x), L.t(out)
    mults, shifts = _per_channel_multipliers(L, x, w, out, channels)
    lo, hi = quant.activation_range(_activation(op), to.scale, to.zero_point)
    input_offset = -tx.zero_point
    b = f"{{T{bias}}}" if bias >= 0 else "NULL"
    if int(op.options.padding) == 1:  # VALID: no tap is ever skipped, folding is exact
        folded = _fold_input_offset(L, w, bias, input_offset, reduce_axes=reduce_axes)
        if folded is not None:
            b, input_offset = folded, 0
    fields.update({
        "input_offset": input_offset,
        "output_offset": to.zero_point,
        "output_multiplier": L.int32_array(mults),
        "output_shift": L.int32_array(shifts),
        "act_min": lo,
        "act_max": hi,
    })
    p = L.struct(struct, fields)
    L.emit(f"{kernel}(&{p}, {{T{x}}}, {{T{w}}}, {b}, {{T{out}}});", [x, w, bias], [out])


def lower_conv_2d(L: Lowering, op: Operator):
    operands, (tx, tw, to) = _conv_operands(L, op, "CONV_2D")
    n, ih, iw, ic = tx.shape
    oc, fh, fw, fic = tw.shape
    _, oh, ow, occ = to.shape
    if occ != oc or ic % fic != 0:
        raise L.fail(f"inconsistent shapes {tx.shape} * {tw.shape} -> {to.shape}")
    fields = {
        "batches": n, "input_height": ih, "input_width": iw, "input_depth": ic,
        "filter_height": fh, "filter_width": fw, "filter_input_depth": fic,
        "output_height": oh, "output_width": ow, "output_depth": oc,
    }
    fields.update(_conv_geometry(L, op, ih, iw, fh, fw, oh, ow))
    _emit_convolution(L, op, operands, fields, oc, (1, 2, 3), "tl_conv_params", "tl_conv2d_s8")


def lower_depthwise_conv_2d(L: Lowering, op: Operator):
    operands, (tx, tw, to) = _conv_operands(L, op, "DEPTHWISE_CONV_2D")
    n, ih, iw, ic = tx.shape
    _, fh, fw, oc = tw.shape
    _, oh, ow, occ = to.shape
    if occ != oc or oc % ic != 0:
        raise L.fail(f"inconsistent shapes {tx.shape} * {tw.shape} -> {to.shape}")
    fields = {
        "batches": n, "input_height": ih, "input_width": iw, "input_depth": ic,
        "filter_height": fh, "filter_width": fw, "depth_multiplier": oc // ic,
        "output_height": oh, "output_width": ow, "output_depth": oc,
    }
    fields.update(_conv_geometry(L, op, ih, iw, fh, fw, oh, ow))
    _emit_convolution(L, op, operands, fields, oc, (0, 1, 2), "tl_dwconv_params", "tl_depthwise_conv2d_s8")


def batch_matmul_geometry(L: Lowering, op: Operator) -> dict:
    """The ``tl_batch_matmul_params`` fields that describe shapes (any element type):
    adj_x / adj_y and batch broadcasting become strides."""
    a, b = op.inputs[:2]
    ta, tb, to = L.t(a), L.t(b), L.t(op.outputs[0])
    adj_x = bool(getattr(op.options, "adjX", False)) if op.options else False
    adj_y = bool(getattr(op.options, "adjY", False)) if op.options else False
    rank = max(len(ta.shape), len(tb.shape))
    if not (2 <= len(ta.shape) <= 5 and 2 <= len(tb.shape) <= 5):
        raise L.fail("BATCH_MATMUL operands must have rank 2 to 5")
    if rank - 2 > 3:
        raise L.fail("BATCH_MATMUL supports at most three batch axes")
    la = (1,) * (rank - len(ta.shape)) + tuple(ta.shape)
    lb = (1,) * (rank - len(tb.shape)) + tuple(tb.shape)

    def extent(shape, i):
        return 0 if shape[i] == 1 else int(np.prod(shape[i + 1 :]))

    batch_shape, sa, sb = [], [], []
    for i in range(rank - 2):
        if la[i] != lb[i] and 1 not in (la[i], lb[i]):
            raise L.fail(f"batch axes {la} and {lb} do not broadcast")
        batch_shape.append(max(la[i], lb[i]))
        sa.append(extent(la, i))
        sb.append(extent(lb, i))
    while len(batch_shape) < 3:
        batch_shape.insert(0, 1)
        sa.insert(0, 0)
        sb.insert(0, 0)
    A, B = la[-2], la[-1]
    C, D = lb[-2], lb[-1]
    rows, depth, lhs_row, lhs_depth = (B, A, 1, B) if adj_x else (A, B, B, 1)
    depth_b, cols, rhs_depth, rhs_col = (D, C, 1, D) if adj_y else (C, D, D, 1)
    if depth != depth_b:
        raise L.fail(f"inner dimensions differ: {depth} vs {depth_b}")
    if int(np.prod(batch_shape)) * rows * cols != to.size:
        raise L.fail(f"output size {to.size} does not match the product shape")
    return {
        "batch_shape": batch_shape,
        "lhs_batch_strides": sa,
        "rhs_batch_strides": sb,
        "rows": rows,
        "cols": cols,
        "depth": depth,
        "lhs_row_stride": lhs_row,
        "lhs_depth_stride": lhs_depth,
        "rhs_depth_stride": rhs_depth,
        "rhs_col_stride": rhs_col,
    }


def lower_batch_matmul(L: Lowering, op: Operator):
    a, b = op.inputs[:2]
    out = op.outputs[0]
    if _is_float(L, a):
        raise L.fail("float BATCH_MATMUL is not supported; convert it to int8")
    _require_int8(L, a, b, out)
    ta, tb, to = L.t(a), L.t(b), L.t(out)
    geometry = batch_matmul_geometry(L, op)
    product = float(ta.scale * tb.scale)  # float product as in TFLM
    m, sh = quant.quantize_multiplier(product / float(to.scale))
    p = L.struct("tl_batch_matmul_params", {
        **geometry,
        "lhs_offset": -ta.zero_point,
        "rhs_offset": -tb.zero_point,
        "output_offset": to.zero_point,
        "output_multiplier": m,
        "output_shift": sh,
        "act_min": -128,
        "act_max": 127,
    })
    L.emit(f"tl_batch_matmul_s8(&{p}, {{T{a}}}, {{T{b}}}, {{T{out}}});", [a, b], [out])


# ---------------------------------------------------------------------------
# reductions

def _reduce_shape(L: Lowering, x: int, axis_tensor: int) -> tuple[dict, int]:
    tx = L.t(x)
    axes = np.asarray(_const(L, axis_tensor, "reduction axes")).reshape(-1)
    rank = len(tx.shape)
    resolved = []
    for a in axes:
        a = int(a)
        if a < 0:
            a += rank
        if not 0 <= a < rank:
            raise L.fail(f"reduction axis {int(a)} out of range for rank {rank}")
        if a not in resolved:
            resolved.append(a)
    strides = _dense_strides(tx.shape)
    kept = [[int(tx.shape[i]), strides[i]] for i in range(rank) if i not in resolved]
    reduced = [[int(tx.shape[i]), strides[i]] for i in range(rank) if i in resolved]
    kept_m = [d for d in _merge_dims(kept)] if kept else []
    kept_m = [d for d in kept_m if d[0] != 1]
    reduced_m = _merge_dims(reduced) if reduced else [[1, 0]]
    if len(kept_m) > MAX_DIMS or len(reduced_m) > MAX_DIMS:
        raise L.fail("reduction over too many axes")
    n = int(np.prod([d[0] for d in reduced_m]))
    return {
        "kept_ndim": len(kept_m),
        "kept_shape": [d[0] for d in kept_m] or [1],
        "kept_strides": [d[1] for d in kept_m] or [0],
        "reduced_ndim": len(reduced_m),
        "reduced_shape": [d[0] for d in reduced_m],
        "reduced_strides": [d[1] for d in reduced_m],
    }, n


def _lower_sum_mean(L: Lowering, op: Operator, is_mean: bool):
    x, axis = op.inputs[:2]
    out = op.outputs[0]
    if _is_float(L, x):
        raise L.fail(f"float {op.opcode} is not supported; convert it to int8")
    _require_int8(L, x, out)
    emit_sum_mean(L, op, is_mean, "tl_reduce_sum_s8")


def emit_sum_mean(L: Lowering, op: Operator, is_mean: bool, kernel: str):
    """MEAN / SUM's parameters (the same in int8 and int16) and the call of ``kernel``."""
    x, axis = op.inputs[:2]
    out = op.outputs[0]
    shape, n = _reduce_shape(L, x, axis)
    if L.t(out).size * n != L.t(x).size:
        raise L.fail("reduction output size does not match the axes")
    m, sh = quant.quantize_multiplier(float(L.t(x).scale) / float(L.t(out).scale))
    if is_mean:
        m, sh = quant.mean_multiplier(m, sh, n)
    s = L.struct("tl_reduce_shape", shape)
    p = L.struct("tl_sum_params", {
        "input_zero_point": L.t(x).zero_point,
        "output_zero_point": L.t(out).zero_point,
        "num_elements": n,
        "multiplier": m,
        "shift": sh,
    })
    L.emit(f"{kernel}(&{p}, &{s}, {{T{x}}}, {{T{out}}});", [x], [out])


def lower_mean(L: Lowering, op: Operator):
    _lower_sum_mean(L, op, is_mean=True)


def lower_sum(L: Lowering, op: Operator):
    _lower_sum_mean(L, op, is_mean=False)


def _lower_reduce_max_min(L: Lowering, op: Operator, which: str):
    x, axis = op.inputs[:2]
    out = op.outputs[0]
    _require_int8(L, x, out)
    if L.t(x).scale != L.t(out).scale or L.t(x).zero_point != L.t(out).zero_point:
        raise L.fail("input and output quantization must match (as TFLM requires)")
    shape, _ = _reduce_shape(L, x, axis)
    s = L.struct("tl_reduce_shape", shape)
    L.emit(f"tl_reduce_{which}_s8(&{s}, {{T{x}}}, {{T{out}}});", [x], [out])


def lower_reduce_max(L: Lowering, op: Operator):
    _lower_reduce_max_min(L, op, "max")


def lower_reduce_min(L: Lowering, op: Operator):
    _lower_reduce_max_min(L, op, "min")


# ---------------------------------------------------------------------------
# data movement

def _same_layout_types(L: Lowering, a: int, b: int):
    if L.t(a).dtype != L.t(b).dtype:
        raise L.fail(f"{L.t(a).describe()} and {L.t(b).describe()} differ in type")


def lower_reshape(L: Lowering, op: Operator):
    x, out = op.inputs[0], op.outputs[0]
    _same_layout_types(L, x, out)
    if L.t(x).size != L.t(out).size:
        raise L.fail(f"cannot reshape {L.t(x).size} values into {list(L.t(out).shape)}")
    L.alias(out, x, 0)


def _copy_block(L: Lowering, src: int, dst: int, shape, src_strides, src_base: int,
                dst_strides=None, dst_base: int = 0, allow_alias: bool = True):
    """Copy a strided block of ``src`` into ``dst`` (dense unless dst_strides
    is given). A block that is one contiguous run of ``src`` filling all of
    ``dst`` becomes an alias instead of a copy."""
    item = L.t(src).itemsize
    dense = dst_strides is None
    if dense:
        dst_strides = _dense_strides(shape)
    d = copy_desc(shape, src_strides, dst_strides)
    count = int(np.prod(shape)) if len(shape) else 1
    if count == 0:
        return
    contiguous = d["ndim"] == 1 and (d["src_strides"][0] == 1 or d["shape"][0] == 1)
    if allow_alias and dense and dst_base == 0 and contiguous and count == L.t(dst).size:
        L.alias(dst, src, src_base * item)
        return
    desc = L.struct("tl_copy_desc", d)
    src_ptr = f"(const uint8_t*){{T{src}}} + {src_base * item}" if src_base else f"{{T{src}}}"
    dst_ptr = f"(uint8_t*){{T{dst}}} + {dst_base * item}" if dst_base else f"{{T{dst}}}"
    L.emit(f"tl_copy_nd(&{desc}, {item}, {src_ptr}, {dst_ptr});", [src], [dst])


def lower_transpose(L: Lowering, op: Operator):
    x, perm_t = op.inputs[:2]
    out = op.outputs[0]
    _same_layout_types(L, x, out)
    perm = [int(p) for p in np.asarray(_const(L, perm_t, "permutation")).reshape(-1)]
    shape_in = L.t(x).shape
    strides = _dense_strides(shape_in)
    rank = len(shape_in)
    perm = [p + rank if p < 0 else p for p in perm]
    out_shape = [shape_in[p] for p in perm]
    if tuple(out_shape) != tuple(L.t(out).shape):
        raise L.fail(f"permutation {perm} of {list(shape_in)} does not give {list(L.t(out).shape)}")
    _copy_block(L, x, out, out_shape, [strides[p] for p in perm], 0)


def _axis(L: Lowering, axis: int, rank: int) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise L.fail(f"axis {axis} out of range for rank {rank}")
    return a


def lower_concatenation(L: Lowering, op: Operator):
    out = op.outputs[0]
    to = L.t(out)
    if _activation(op) != 0:
        raise L.fail("fused activation on CONCATENATION is not supported")
    axis = _axis(L, int(op.options.axis), len(to.shape))
    out_strides = _dense_strides(to.shape)
    pos = 0
    for x in op.inputs:
        tx = L.t(x)
        _same_layout_types(L, x, out)
        if tx.dtype == "int8" and (tx.scale != to.scale or tx.zero_point != to.zero_point):
            raise L.fail("int8 inputs must share the output's quantization (as TFLM requires)")
        _copy_block(L, x, out, tx.shape, _dense_strides(tx.shape), 0,
                    dst_strides=out_strides, dst_base=pos * out_strides[axis])
        pos += tx.shape[axis]


def lower_pack(L: Lowering, op: Operator):
    out = op.outputs[0]
    to = L.t(out)
    axis = _axis(L, int(op.options.axis), len(to.shape))
    out_strides = _dense_strides(to.shape)
    for k, x in enumerate(op.inputs):
        _same_layout_types(L, x, out)
        shape = list(L.t(x).shape)
        shape.insert(axis, 1)
        _copy_block(L, x, out, shape, _dense_strides(shape), 0,
                    dst_strides=out_strides, dst_base=k * out_strides[axis])


def lower_unpack(L: Lowering, op: Operator):
    x = op.inputs[0]
    tx = L.t(x)
    axis = _axis(L, int(op.options.axis), len(tx.shape))
    strides = _dense_strides(tx.shape)
    shape = list(tx.shape)
    shape[axis] = 1
    for k, out in enumerate(op.outputs):
        _same_layout_types(L, x, out)
        _copy_block(L, x, out, shape, strides, k * strides[axis])


def _split_along(L: Lowering, x: int, outputs, axis: int, sizes):
    tx = L.t(x)
    strides = _dense_strides(tx.shape)
    start = 0
    for out, n in zip(outputs, sizes):
        _same_layout_types(L, x, out)
        shape = list(tx.shape)
        shape[axis] = int(n)
        _copy_block(L, x, out, shape, strides, start * strides[axis])
        start += int(n)


def lower_split(L: Lowering, op: Operator):
    axis_t, x = op.inputs[:2]
    tx = L.t(x)
    axis = _axis(L, int(np.asarray(_const(L, axis_t, "split axis")).reshape(-1)[0]), len(tx.shape))
    n = len(op.outputs)
    if tx.shape[axis] % n:
        raise L.fail(f"axis of size {tx.shape[axis]} does not split into {n}")
    _split_along(L, x, op.outputs, axis, [tx.shape[axis] // n] * n)


def lower_split_v(L: Lowering, op: Operator):
    x, sizes_t, axis_t = op.inputs[:3]
    tx = L.t(x)
    axis = _axis(L, int(np.asarray(_const(L, axis_t, "split axis")).reshape(-1)[0]), len(tx.shape))
    _split_along(L, x, op.outputs, axis, [L.t(o).shape[axis] for o in op.outputs])


def _strided_slice_axis(size, start, stop, stride, begin_mask, end_mask, shrink, offset):
    """StridedSliceStartForAxis / StridedSliceEndForAxis of strided_slice_logic.h."""
    def clamp(v, lo, hi):
        return hi if hi < v else (lo if v < lo else v)

    if start < 0:
        start += size
    start = clamp(start, 0, size) if stride > 0 else clamp(start, -1, size - 1)
    if begin_mask:
        start = 0 if stride > 0 else size - 1
    if shrink:
        return start, (start if start >= size else start + 1)
    end = stop + start if offset else stop
    if end < 0:
        end += size
    end = clamp(end, 0, size) if stride > 0 else clamp(end, -1, size - 1)
    if end_mask:
        end = size if stride > 0 else -1
    return start, end


def lower_strided_slice(L: Lowering, op: Operator):
    x, b_t, e_t, s_t = op.inputs[:4]
    out = op.outputs[0]
    tx = L.t(x)
    _same_layout_types(L, x, out)
    begin = [int(v) for v in np.asarray(_const(L, b_t, "begin")).reshape(-1)]
    end = [int(v) for v in np.asarray(_const(L, e_t, "end")).reshape(-1)]
    steps = [int(v) for v in np.asarray(_const(L, s_t, "strides")).reshape(-1)]
    o = op.options
    # TFLM zeroes the ellipsis and new-axis masks; so do we.
    bm, em, sm = int(o.beginMask), int(o.endMask), int(o.shrinkAxisMask)
    offset = bool(getattr(o, "offset", False))
    rank = len(tx.shape)
    if not (len(begin) == len(end) == len(steps) == rank):
        raise L.fail("begin, end and strides must have one entry per input axis")
    strides = _dense_strides(tx.shape)
    shape, src_strides, base = [], [], 0
    for i in range(rank):
        if steps[i] == 0:
            raise L.fail("stride value has to be non-zero")
        start, stop = _strided_slice_axis(int(tx.shape[i]), begin[i], end[i], steps[i],
                                          bm & (1 << i), em & (1 << i), sm & (1 << i), offset)
        count = len(range(start, stop, steps[i]))
        shape.append(count)
        src_strides.append(strides[i] * steps[i])
        base += start * strides[i] if count else 0
    if int(np.prod(shape)) != L.t(out).size:
        raise L.fail(f"slice of {shape} does not match output {list(L.t(out).shape)}")
    _copy_block(L, x, out, shape, src_strides, base)


def lower_slice(L: Lowering, op: Operator):
    x, b_t, s_t = op.inputs[:3]
    out = op.outputs[0]
    tx = L.t(x)
    _same_layout_types(L, x, out)
    begin = [int(v) for v in np.asarray(_const(L, b_t, "begin")).reshape(-1)]
    size = [int(v) for v in np.asarray(_const(L, s_t, "size")).reshape(-1)]
    strides = _dense_strides(tx.shape)
    shape = [tx.shape[i] - begin[i] if size[i] == -1 else size[i] for i in range(len(begin))]
    base = sum(b * s for b, s in zip(begin, strides))
    _copy_block(L, x, out, shape, strides, base)


def lower_pad(L: Lowering, op: Operator):
    x, p_t = op.inputs[:2]
    value_t = op.inputs[2] if len(op.inputs) > 2 else -1
    out = op.outputs[0]
    tx, to = L.t(x), L.t(out)
    _same_layout_types(L, x, out)
    pads = np.asarray(_const(L, p_t, "paddings")).reshape(-1, 2)
    if len(pads) != len(tx.shape):
        raise L.fail("one (before, after) padding pair per axis is required")
    if tx.dtype == "int8":
        if value_t >= 0:
            v = int(np.asarray(_const(L, value_t, "pad value")).reshape(-1)[0])
        else:
            v = to.zero_point
        fill = f"(int8_t){v}"
        ctype = "int8_t"
    elif tx.dtype == "float32":
        v = float(np.asarray(_const(L, value_t, "pad value")).reshape(-1)[0]) if value_t >= 0 else 0.0
        fill = _c_float(np.float32(v))
        ctype = "float"
    else:
        raise L.fail(f"PAD of {tx.dtype} is not supported")
    out_strides = _dense_strides(to.shape)
    base = sum(int(pads[i][0]) * out_strides[i] for i in range(len(tx.shape)))
    name = L._name("tl_padv")
    L.emit(
        [
            f"{{ static const {ctype} {name} = {fill}; "
            f"tl_fill({tx.itemsize}, {to.size}, &{name}, {{T{out}}}); }}",
        ],
        [], [out],
    )
    _copy_block(L, x, out, tx.shape, _dense_strides(tx.shape), 0,
                dst_strides=out_strides, dst_base=base, allow_alias=False)


LOWERINGS: dict[str, Callable[[Lowering, Operator], None]] = {
    "ADD": lower_add,
    "SUB": lower_sub,
    "MUL": lower_mul,
    "DIV": lower_div,
    "SQUARED_DIFFERENCE": lower_squared_difference,
    "MAXIMUM": lower_maximum,
    "MINIMUM": lower_minimum,
    "LOGISTIC": lower_logistic,
    "TANH": lower_tanh,
    "ELU": lower_elu,
    "RSQRT": lower_rsqrt,
    "L2_NORMALIZATION": lower_l2_normalization,
    "RELU": lower_relu,
    "SOFTMAX": lower_softmax,
    "QUANTIZE": lower_quantize,
    "DEQUANTIZE": lower_dequantize,
    "EXP": _float_only("EXP"),
    "LOG": _float_only("LOG"),
    "SQUARE": _float_only("SQUARE"),
    "SQRT": _float_only("SQRT"),
    "ABS": _float_only("ABS"),
    "NEG": _float_only("NEG"),
    "FULLY_CONNECTED": lower_fully_connected,
    "CONV_2D": lower_conv_2d,
    "DEPTHWISE_CONV_2D": lower_depthwise_conv_2d,
    "BATCH_MATMUL": lower_batch_matmul,
    "MEAN": lower_mean,
    "SUM": lower_sum,
    "REDUCE_MAX": lower_reduce_max,
    "REDUCE_MIN": lower_reduce_min,
    "RESHAPE": lower_reshape,
    "SQUEEZE": lower_reshape,
    "EXPAND_DIMS": lower_reshape,
    "TRANSPOSE": lower_transpose,
    "CONCATENATION": lower_concatenation,
    "PACK": lower_pack,
    "UNPACK": lower_unpack,
    "SPLIT": lower_split,
    "SPLIT_V": lower_split_v,
    "STRIDED_SLICE": lower_strided_slice,
    "SLICE": lower_slice,
    "PAD": lower_pad,
    "PADV2": lower_pad,
}

SUPPORTED_OPS = tuple(sorted(LOWERINGS))

# Operators that only move bytes: one lowering serves every element type.
LAYOUT_OPS = frozenset({
    "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "CONCATENATION", "PACK", "UNPACK",
    "SPLIT", "SPLIT_V", "STRIDED_SLICE", "SLICE",
})


def is_int16_op(graph: Graph, op: Operator) -> bool:
    """True for an operator of an int16x8 graph: an int16 activation in or out."""
    return any(i >= 0 and graph.tensors[i].dtype == "int16" and not graph.tensors[i].is_constant
               for i in (*op.inputs, *op.outputs))


def lower_graph(graph: Graph, tables: bool = True,
                int16_lowerings: dict[str, Callable[[Lowering, Operator], None]] | None = None) -> Lowering:
    """Lower every operator; unsupported ones fail naming the op.

    An operator with int16 activations (an int16x8 model) takes its lowering from
    ``int16_lowerings`` (kernels of their own: TFLM's int16 arithmetic differs from its
    int8 arithmetic), except for the layout operators, which only move bytes."""
    int16_lowerings = int16_lowerings or {}

    def lowering_of(op: Operator):
        if op.opcode in LAYOUT_OPS or not is_int16_op(graph, op):
            return LOWERINGS.get(op.opcode)
        return int16_lowerings.get(op.opcode)

    missing = [op for op in graph.operators if lowering_of(op) is None]
    if missing:
        where = ", ".join(
            f"{name} (operator {next(o.index for o in missing if o.opcode == name)})"
            for name in sorted({o.opcode for o in missing})
        )
        int16 = [o for o in missing if is_int16_op(graph, o)]
        supported = (f"Supported in int16x8: {', '.join(sorted(set(int16_lowerings) | LAYOUT_OPS))}" if int16
                     else f"Supported: {', '.join(SUPPORTED_OPS)}")
        raise UnsupportedOperator(
            f"the model uses operators with no AOT kernel{' for int16 activations' if int16 else ''}: "
            f"{where}. {supported}"
        )
    L = Lowering(graph, tables=tables)
    for op in graph.operators:
        L.op = op
        lowering_of(op)(L, op)
    L.op = None
    return L
