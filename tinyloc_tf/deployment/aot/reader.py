"""Read a .tflite flatbuffer into plain Python objects for the AOT compiler.

Parsing is done by the flatbuffer schema bindings that ship with the
tflite-micro wheel (``schema_py_generated``); this module only turns the
generated object tree into a small graph model with numpy constants and
named operators.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyloc_tf.compression.metadata import tflite_schema
from tinyloc_tf.errors import TinylocError

# TensorType enum value -> (name, numpy dtype)
_DTYPES = {
    0: ("float32", np.float32),
    1: ("float16", np.float16),
    2: ("int32", np.int32),
    3: ("uint8", np.uint8),
    4: ("int64", np.int64),
    6: ("bool", np.bool_),
    7: ("int16", np.int16),
    9: ("int8", np.int8),
    10: ("float64", np.float64),
}


@dataclass
class Tensor:
    """One tensor of the graph. ``data`` is set for constants (weights etc.)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scales: np.ndarray | None = None  # float32 [C] or None when not quantized
    zero_points: np.ndarray | None = None  # int64 [C]
    quantized_dimension: int = 0
    data: np.ndarray | None = None
    is_variable: bool = False

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def itemsize(self) -> int:
        return np.dtype(_numpy_dtype(self.dtype)).itemsize

    @property
    def nbytes(self) -> int:
        return self.size * self.itemsize

    @property
    def is_quantized(self) -> bool:
        return self.scales is not None and len(self.scales) > 0

    @property
    def scale(self) -> np.float32:
        """First (per-tensor) scale as float32, exactly as TFLM stores it."""
        if not self.is_quantized:
            raise TinylocError(f"tensor {self.index} ({self.name!r}) has no quantization scale")
        return np.float32(self.scales[0])

    @property
    def zero_point(self) -> int:
        if self.zero_points is None or len(self.zero_points) == 0:
            return 0
        return int(self.zero_points[0])

    def describe(self) -> str:
        return f"tensor {self.index} {self.name!r} {self.dtype}{list(self.shape)}"


@dataclass
class Operator:
    """One operator: its builtin name, tensor indices (-1 = omitted optional
    input) and the unpacked builtin options object of the schema (or None)."""

    index: int
    opcode: str
    inputs: list[int]
    outputs: list[int]
    options: Any = None


@dataclass
class Graph:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]
    outputs: list[int]
    metadata: dict[str, bytes] = field(default_factory=dict)
    description: str = ""
    schema_version: int = 0


def _numpy_dtype(name: str):
    for _, (n, dt) in _DTYPES.items():
        if n == name:
            return dt
    raise TinylocError(f"unsupported tensor type {name}")


def builtin_op_names() -> dict[int, str]:
    schema = tflite_schema()
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _buffer_bytes(model_bytes: bytes, buffer) -> bytes:
    # Models over 2 GB keep buffers outside the flatbuffer (offset/size).
    offset = int(getattr(buffer, "offset", 0) or 0)
    size = int(getattr(buffer, "size", 0) or 0)
    if offset > 1 and size > 0:
        return bytes(model_bytes[offset : offset + size])
    data = buffer.data
    if data is None:
        return b""
    return np.asarray(data, dtype=np.uint8).tobytes()


def read_tflite(source: bytes | bytearray | str | Path, where: str | None = None) -> Graph:
    """Parse a .tflite model (bytes or path) into a :class:`Graph`.

    Only the first subgraph is read; models with control flow (several
    subgraphs) are rejected because their WHILE/IF ops cannot be compiled.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise TinylocError(f"model file not found: {path}")
        model_bytes = path.read_bytes()
        where = str(path)
    else:
        model_bytes = bytes(source)
        where = where or "model bytes"  # the caller may know the file the bytes came from
    if len(model_bytes) < 8 or model_bytes[4:8] != b"TFL3":
        raise TinylocError(f"{where} is not a .tflite flatbuffer (missing TFL3 identifier)")

    schema = tflite_schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    except Exception as exc:  # flatbuffers raises assorted errors on corrupt input
        raise TinylocError(f"cannot parse {where} as a .tflite model: {exc}") from exc
    if not model.subgraphs:
        raise TinylocError(f"{where} has no subgraph")
    names = builtin_op_names()

    sg = model.subgraphs[0]
    tensors: list[Tensor] = []
    for i, t in enumerate(sg.tensors or []):
        if t.type not in _DTYPES:
            raise TinylocError(f"{where}: tensor {i} has unsupported type code {t.type}")
        dtype_name, np_dtype = _DTYPES[t.type]
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
        name = t.name.decode() if isinstance(t.name, bytes) else (t.name or "")
        scales = zero_points = None
        qdim = 0
        q = t.quantization
        if q is not None and q.scale is not None and len(q.scale) > 0:
            scales = np.asarray(q.scale, dtype=np.float32)
            zp = q.zeroPoint if q.zeroPoint is not None else [0] * len(scales)
            zero_points = np.asarray(zp, dtype=np.int64)
            qdim = int(q.quantizedDimension or 0)
        data = None
        if t.buffer and model.buffers and t.buffer < len(model.buffers):
            raw = _buffer_bytes(model_bytes, model.buffers[t.buffer])
            if raw:
                arr = np.frombuffer(raw, dtype=np.dtype(np_dtype).newbyteorder("<")).copy()
                data = arr.reshape(shape) if shape else arr.reshape(())
        tensors.append(
            Tensor(
                index=i,
                name=name,
                shape=shape,
                dtype=dtype_name,
                scales=scales,
                zero_points=zero_points,
                quantized_dimension=qdim,
                data=data,
                is_variable=bool(t.isVariable),
            )
        )

    operators: list[Operator] = []
    for i, op in enumerate(sg.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        opname = names.get(builtin, f"BUILTIN_{builtin}")
        if opname == "CUSTOM":
            custom = code.customCode.decode() if code.customCode else "?"
            opname = f"CUSTOM({custom})"
        operators.append(
            Operator(
                index=i,
                opcode=opname,
                inputs=[int(x) for x in (op.inputs if op.inputs is not None else [])],
                outputs=[int(x) for x in (op.outputs if op.outputs is not None else [])],
                options=op.builtinOptions,
            )
        )

    if len(model.subgraphs) > 1:
        control = [o.opcode for o in operators if o.opcode in ("WHILE", "IF", "CALL_ONCE")]
        what = ", ".join(sorted(set(control))) or "several subgraphs"
        raise TinylocError(
            f"{where}: control flow ({what}) cannot be compiled ahead of time; "
            "unroll loops over the fixed window length instead"
        )

    metadata: dict[str, bytes] = {}
    for m in model.metadata or []:
        key = m.name.decode() if isinstance(m.name, bytes) else str(m.name)
        if model.buffers and m.buffer < len(model.buffers):
            metadata[key] = _buffer_bytes(model_bytes, model.buffers[m.buffer])

    desc = model.description.decode() if isinstance(model.description, bytes) else (model.description or "")
    return Graph(
        tensors=tensors,
        operators=operators,
        inputs=[int(x) for x in (sg.inputs if sg.inputs is not None else [])],
        outputs=[int(x) for x in (sg.outputs if sg.outputs is not None else [])],
        metadata=metadata,
        description=desc,
        schema_version=int(model.version),
    )
