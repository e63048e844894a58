"""Read a .tflite flatbuffer into plain Python objects for the AOT compiler.

Parsing and checking are :func:`tinyloc_tf.compression.flatbuffer.read_model`'s
(the schema bindings of the tflite-micro wheel); this module only turns its
object tree into a small graph model with numpy constants and named operators.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinyloc_tf.compression.flatbuffer import NUMPY_DTYPES, decode_name, indices, read_model, tensor_quantization
from tinyloc_tf.errors import TinylocError


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
    """numpy dtype of a tensor dtype name (``"int8"``: the schema's TensorType name, lower case)."""
    if name.upper() not in NUMPY_DTYPES:
        raise TinylocError(f"unsupported tensor type {name}")
    return NUMPY_DTYPES[name.upper()]


def read_tflite(source: bytes | bytearray | str | Path, where: str | None = None) -> Graph:
    """Parse a .tflite model (bytes or path) into a :class:`Graph`.

    Only the first subgraph is read; models with control flow (several
    subgraphs) are rejected because their WHILE/IF ops cannot be compiled.
    ``where`` names bytes in errors (the caller may know the file they came from).
    """
    fb = read_model(source, where or "model bytes")
    tensors: list[Tensor] = []
    for i, t in enumerate(fb.tensors):
        type_name = fb.type_name(t)
        if type_name not in NUMPY_DTYPES:
            raise TinylocError(f"{fb.where}: tensor {i} has unsupported type {type_name}")
        scales, zero_points, qdim = tensor_quantization(t)
        tensors.append(
            Tensor(
                index=i,
                name=decode_name(t.name),
                shape=tuple(indices(t.shape)),
                dtype=type_name.lower(),
                scales=scales,
                zero_points=zero_points,
                quantized_dimension=qdim,
                data=fb.tensor_data(t),
                is_variable=bool(t.isVariable),
            )
        )

    operators = [
        Operator(index=i, opcode=fb.op_name(op), inputs=indices(op.inputs), outputs=indices(op.outputs),
                 options=op.builtinOptions)
        for i, op in enumerate(fb.operators)
    ]
    if len(fb.model.subgraphs) > 1:
        control = [o.opcode for o in operators if o.opcode in ("WHILE", "IF", "CALL_ONCE")]
        what = ", ".join(sorted(set(control))) or "several subgraphs"
        raise TinylocError(
            f"{fb.where}: control flow ({what}) cannot be compiled ahead of time; "
            "unroll loops over the fixed window length instead"
        )
    return Graph(
        tensors=tensors,
        operators=operators,
        inputs=fb.inputs,
        outputs=fb.outputs,
        metadata=fb.metadata(),
        description=decode_name(fb.model.description),
        schema_version=int(fb.model.version),
    )
