"""Reading and writing ``.tflite`` flatbuffers: the one module that walks the TFLite schema.

::

    fb = read_model("m.tflite")            # or bytes; checked whole, errors name the file
    for op in fb.operators:                # the main subgraph
        fb.op_name(op), [fb.type_name(fb.tensors[i]) for i in indices(op.inputs)]
    scales, zero_points, dim = tensor_quantization(fb.tensors[fb.inputs[0]])
    weights = fb.tensor_data(fb.tensors[3])   # numpy, or None for a non-constant tensor
    fb.metadata()                          # {name: bytes}
    buf = pack_model(fb.model)             # after editing the object tree

Parsing uses the schema's generated Python object API (``schema_py_generated``, shipped in the
tflite-micro wheel, so no TensorFlow is needed). Writing packs the object tree with
:class:`SharingBuilder`: identical arrays and strings are stored once (the per-channel zero
points, the empty tensor names, repeated quantization and shape vectors), and byte arrays
start on 16 bytes (the schema's ``force_align`` on buffer data, which the object API ignores
and Cortex-M kernels rely on). The file means exactly what the converter wrote; it is smaller.

Callers: ``compression/metadata.py`` (the ``tinyloc`` metadata entries),
``compression/convert.py`` (op tables, float-op and int8 checks), ``deployment/export_c.py``
(``inspect_tflite``) and ``deployment/aot/reader.py`` (the AOT compiler's graph).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tinyloc_tf.errors import TinylocError, shown

TFLITE_FILE_IDENTIFIER = b"TFL3"

#: TensorType name -> numpy dtype, for the types whose buffers read as plain little-endian arrays.
NUMPY_DTYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "FLOAT64": np.float64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}


def tflite_schema():
    """The TFLite flatbuffer schema bindings (the tflite-micro wheel ships them)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


# --------------------------------------------------------------------------- schema tables


@functools.cache
def enum_names(enum_class) -> dict[int, str]:
    """``{value: name}`` of one of the schema's enum classes (``BuiltinOperator``, ``TensorType``)."""
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def builtin_op_names() -> dict[int, str]:
    """``{BuiltinOperator code: name}``."""
    return enum_names(tflite_schema().BuiltinOperator)


def tensor_type_names() -> dict[int, str]:
    """``{TensorType code: name}`` (``"INT8"``, ``"FLOAT32"``, ...)."""
    return enum_names(tflite_schema().TensorType)


def decode_name(value) -> str:
    """A flatbuffer string field (bytes, str or None) as ``str``."""
    if value is None:
        return ""
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else str(value)


def indices(vector) -> list[int]:
    """A tensor-index vector of the object API (numpy array, list or None) as ``list[int]``."""
    return [] if vector is None else [int(i) for i in vector]


def builtin_code(code) -> int:
    """The builtin operator of an ``OperatorCodeT`` (codes over 127 live in ``builtinCode`` only)."""
    return max(int(code.builtinCode), int(code.deprecatedBuiltinCode))


def opcode_name(code) -> str:
    """``"FULLY_CONNECTED"``, or ``"CUSTOM:<custom code>"`` for a custom operator."""
    builtin = builtin_code(code)
    name = builtin_op_names().get(builtin, f"BUILTIN_{builtin}")
    if name == "CUSTOM":
        name = f"CUSTOM:{decode_name(code.customCode) or '?'}"
    return name


def tensor_quantization(tensor) -> tuple[np.ndarray | None, np.ndarray | None, int]:
    """``(scales float32 [C], zero points int64 [C], quantized dimension)`` of a ``TensorT``;
    ``(None, None, 0)`` when it is not quantized. Missing zero points read as 0."""
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return None, None, 0
    scales = np.asarray(q.scale, dtype=np.float32)
    zero_points = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0] * len(scales), dtype=np.int64)
    return scales, zero_points, int(q.quantizedDimension or 0)


def tensor_nbytes(tensor) -> int:
    """Bytes of a ``TensorT``'s values (its shape times its element size)."""
    dtype = NUMPY_DTYPES.get(tensor_type_names().get(tensor.type), np.int8)
    return int(np.prod(indices(tensor.shape) or [1], dtype=np.int64)) * np.dtype(dtype).itemsize


def buffer_has_data(buffer) -> bool:
    """Whether a ``BufferT`` holds data, inline or (models over 2 GB) at an offset."""
    return (buffer.data is not None and len(buffer.data) > 0) or int(buffer.offset or 0) > 1


# --------------------------------------------------------------------------- reading


@dataclass
class Flatbuffer:
    """A checked ``.tflite``: its bytes, where they came from and the schema's object tree."""

    buf: bytes
    where: str
    model: Any  # ModelT

    @property
    def subgraph(self):
        """The main (first) subgraph."""
        return self.model.subgraphs[0]

    @property
    def tensors(self) -> list:
        return self.subgraph.tensors or []

    @property
    def operators(self) -> list:
        return self.subgraph.operators or []

    @property
    def inputs(self) -> list[int]:
        return indices(self.subgraph.inputs)

    @property
    def outputs(self) -> list[int]:
        return indices(self.subgraph.outputs)

    def opcode_names(self) -> list[str]:
        """:func:`opcode_name` of every operator code, by opcode index."""
        return [opcode_name(code) for code in self.model.operatorCodes or []]

    def op_name(self, operator) -> str:
        return opcode_name(self.model.operatorCodes[operator.opcodeIndex])

    def type_name(self, tensor) -> str:
        return tensor_type_names().get(tensor.type, f"TYPE_{tensor.type}")

    def buffer_bytes(self, index: int) -> bytes:
        """The data of buffer ``index`` (``b""`` when it has none)."""
        buffers = self.model.buffers or []
        if not 0 <= index < len(buffers):
            return b""
        buffer = buffers[index]
        # Models over 2 GB keep buffers outside the flatbuffer (offset/size).
        offset, size = int(buffer.offset or 0), int(buffer.size or 0)
        if offset > 1 and size > 0:
            return bytes(self.buf[offset : offset + size])
        return b"" if buffer.data is None else np.asarray(buffer.data, dtype=np.uint8).tobytes()

    def tensor_data(self, tensor) -> np.ndarray | None:
        """A constant tensor's values (a copy, shaped), or None when it has no data.

        Buffer 0 is the schema's empty sentinel: a tensor pointing at it has no data.
        """
        raw = self.buffer_bytes(tensor.buffer) if tensor.buffer else b""
        if not raw:
            return None
        name = self.type_name(tensor)
        if name not in NUMPY_DTYPES:
            raise TinylocError(f"{self.where}: constant tensor of type {name} cannot be read as an array")
        values = np.frombuffer(raw, dtype=np.dtype(NUMPY_DTYPES[name]).newbyteorder("<")).copy()
        shape = tuple(indices(tensor.shape))
        if values.size != (int(np.prod(shape, dtype=np.int64)) if shape else 1):
            raise TinylocError(
                f"{self.where}: truncated or corrupted .tflite (a {name} tensor of shape {list(shape)} "
                f"has {values.size} values); convert the model again"
            )
        return values.reshape(shape)

    def metadata(self) -> dict[str, bytes]:
        """Every metadata entry as ``{name: raw bytes}``."""
        return {decode_name(entry.name): self.buffer_bytes(entry.buffer) for entry in self.model.metadata or []}


def _source(model, where: str | None) -> tuple[bytes, str]:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), where or "the given model bytes"
    path = Path(model)
    if not path.is_file():
        raise TinylocError(f"{path}: no such .tflite file")
    return path.read_bytes(), str(path)


def _check_identifier(buf: bytes, where: str) -> None:
    if len(buf) < 8 or buf[4:8] != TFLITE_FILE_IDENTIFIER:
        raise TinylocError(
            f"{where}: not a TFLite flatbuffer (file identifier {bytes(buf[4:8])!r}, expected b'TFL3')"
        )


def _check_tree(model) -> None:
    """The references a reader follows point at things that exist (ValueError otherwise)."""
    buffers = len(model.buffers or [])
    for subgraph in model.subgraphs or []:
        tensors = subgraph.tensors or []
        for tensor in tensors:
            if not 0 <= tensor.buffer < max(buffers, 1):
                raise ValueError(f"tensor points at missing buffer {tensor.buffer}")
        for vector in (subgraph.inputs, subgraph.outputs):
            for index in indices(vector):
                if not 0 <= index < len(tensors):
                    raise ValueError(f"subgraph input or output is missing tensor {index}")
        for operator in subgraph.operators or []:
            if not 0 <= operator.opcodeIndex < len(model.operatorCodes or []):
                raise ValueError(f"operator uses missing opcode {operator.opcodeIndex}")
            for index in indices(operator.inputs) + indices(operator.outputs):
                if not -1 <= index < len(tensors):
                    raise ValueError(f"operator uses missing tensor {index}")
    for name in [t.name for g in model.subgraphs or [] for t in g.tensors or []] + [
            c.customCode for c in model.operatorCodes or []] + [e.name for e in model.metadata or []]:
        decode_name(name)  # a damaged string is a damaged file (UnicodeDecodeError), not a later crash
    for entry in model.metadata or []:
        if not 0 <= entry.buffer < buffers:
            raise ValueError(f"metadata entry {decode_name(entry.name)!r} points at missing buffer {entry.buffer}")


def graph_content(model) -> list:
    """What a runtime reads of a ``.tflite``, independent of the file's layout: per subgraph its
    inputs, outputs, operators (code, version, inputs, outputs, options) and tensors (type,
    shape, quantization, constant bytes, variable flag), and the metadata entries' bytes.
    Two files with equal content run identically."""
    fb = read_model(model)
    codes = [(opcode_name(c), int(c.version or 1)) for c in fb.model.operatorCodes or []]

    def options(op):
        value = op.builtinOptions
        fields = sorted((k, np.asarray(v).tolist() if isinstance(v, (np.ndarray, list)) else v)
                        for k, v in vars(value).items()) if value is not None else None
        custom = None if op.customOptions is None else np.asarray(op.customOptions, np.uint8).tobytes()
        return op.builtinOptionsType, repr(fields), custom

    def quantization(tensor):
        scales, zero_points, dim = tensor_quantization(tensor)
        return None if scales is None else (scales.tobytes(), zero_points.tobytes(), dim)

    graphs = []
    for graph in fb.model.subgraphs or []:
        graphs.append((
            indices(graph.inputs), indices(graph.outputs),
            [(codes[op.opcodeIndex], indices(op.inputs), indices(op.outputs), options(op))
             for op in graph.operators or []],
            [(int(t.type), indices(t.shape), quantization(t), fb.buffer_bytes(t.buffer), bool(t.isVariable))
             for t in graph.tensors or []],
        ))
    return [graphs, fb.metadata()]


def read_model(model, where: str | None = None) -> Flatbuffer:
    """``model`` (bytes, or the path of a ``.tflite`` file) unpacked and checked.

    Every table is read once, so a truncated or corrupted file is one clear error naming
    ``where`` (the path, else ``where``, else "the given model bytes") rather than a
    ``struct.error`` (or a crash in an interpreter) later. The flatbuffers Python package has
    no verifier; unpacking the whole object tree reads every offset, which is what a verifier
    checks.
    """
    buf, where = _source(model, where)
    _check_identifier(buf, where)
    try:
        tree = unpack_model(buf)
        _check_tree(tree)
    except Exception as exc:  # struct.error, IndexError, UnicodeDecodeError, ... from a damaged file
        raise TinylocError(
            f"{where}: truncated or corrupted .tflite ({type(exc).__name__}: {shown(exc)}); "
            "convert the model again"
        ) from exc
    if not tree.subgraphs:
        raise TinylocError(f"{where}: the model has no subgraph")
    return Flatbuffer(buf, where, tree)


def model_bytes(model: bytes | bytearray | memoryview | str | os.PathLike) -> bytes:
    """The flatbuffer of ``model`` (bytes, or the path of a ``.tflite`` file).

    A file is checked whole (:func:`read_model`); bytes, which a caller has usually just made
    or checked, only for the TFLite file identifier.
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        buf, where = _source(model, None)
        _check_identifier(buf, where)
        return buf
    return read_model(model).buf


def unpack_model(buf: bytes):
    """The flatbuffer as the schema's mutable object tree (``ModelT``), unchecked."""
    schema = tflite_schema()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAs(buf, 0))


# --------------------------------------------------------------------------- writing


def opcode_index(model_object, builtin: int, version: int = 1) -> int:
    """Index of ``builtin``'s operator code in an unpacked ``ModelT``, added when it has none."""
    for i, code in enumerate(model_object.operatorCodes or []):
        if builtin_code(code) == builtin:
            return i
    code = tflite_schema().OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)  # the schema's placeholder for codes over 127
    code.version = version
    model_object.operatorCodes.append(code)
    return len(model_object.operatorCodes) - 1


def add_tensor_like(model_object, graph, index: int) -> int:
    """Append to ``graph`` a copy of its tensor ``index`` with an empty buffer of its own (a new
    activation with the same type, shape and quantization); the copy's index."""
    import copy

    tensor = copy.deepcopy(graph.tensors[index])
    model_object.buffers.append(tflite_schema().BufferT())
    tensor.buffer = len(model_object.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def drop_unused(model_object) -> tuple[int, int]:
    """Remove, in place, the tensors no operator or graph input / output refers to and the
    operator codes no operator uses (what is left after an operator was taken out), renumbering
    the references. Single-subgraph models only; returns ``(tensors, operator codes)`` removed."""
    if len(model_object.subgraphs or []) != 1:
        return 0, 0
    graph = model_object.subgraphs[0]
    ops = graph.operators or []
    used = set(indices(graph.inputs)) | set(indices(graph.outputs))
    for op in ops:
        used |= {t for t in (*indices(op.inputs), *indices(op.outputs), *indices(op.intermediates)) if t >= 0}
    tensor_index = {old: new for new, old in enumerate(i for i in range(len(graph.tensors)) if i in used)}
    codes = sorted({op.opcodeIndex for op in ops})
    code_index = {old: new for new, old in enumerate(codes)}

    def renumber(vector):
        return None if vector is None else np.array([t if t < 0 else tensor_index[t] for t in indices(vector)],
                                                    dtype=np.int32)

    removed = (len(graph.tensors) - len(tensor_index), len(model_object.operatorCodes or []) - len(codes))
    for op in ops:
        op.inputs, op.outputs, op.intermediates = renumber(op.inputs), renumber(op.outputs), renumber(op.intermediates)
        op.opcodeIndex = code_index[op.opcodeIndex]
    graph.inputs, graph.outputs = renumber(graph.inputs), renumber(graph.outputs)
    graph.tensors = [graph.tensors[old] for old in tensor_index]
    model_object.operatorCodes = [model_object.operatorCodes[old] for old in codes]
    return removed


#: Operators whose third input is a bias the kernels read as plain integers: TFLM and LiteRT
#: compute its scale (input scale x filter scale, per channel) and never read the bias tensor's own.
BIAS_OPERATORS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")


def per_tensor_bias_quantization(model_object, operators=BIAS_OPERATORS) -> int:
    """Keep, in place, one scale and zero point (channel 0's) in every per-channel bias of the
    ``operators`` (names among :data:`BIAS_OPERATORS`); returns how many biases changed.

    The converter writes a per-channel weight's bias with one scale per channel too, a float
    per output channel that TFLM's kernels do not read: they take the per-channel multipliers
    from the input and filter scales, and check a bias's scale only against a per-tensor
    filter's (``GetQuantizedConvolutionMultipler``), where channel 0's is the one compared.
    LiteRT's kernels agree; its XNNPACK delegate also does for FULLY_CONNECTED, but refuses a
    per-channel CONV_2D whose bias has one scale. Outputs are unchanged
    (``tests/test_flatbuffer.py``).
    """
    changed = 0
    for graph in model_object.subgraphs or []:
        tensors = graph.tensors or []
        roles: dict[int, set[bool]] = {}  # tensor -> {is it the bias slot of one of the operators}
        for op in graph.operators or []:
            is_bias_op = opcode_name(model_object.operatorCodes[op.opcodeIndex]) in operators
            for slot, index in enumerate(indices(op.inputs)):
                if index >= 0:
                    roles.setdefault(index, set()).add(is_bias_op and slot == 2)
        for index, role in roles.items():
            q = tensors[index].quantization
            if role != {True} or q is None or q.scale is None or len(q.scale) <= 1:
                continue
            q.scale = np.asarray(q.scale[:1], dtype=np.float32)
            q.zeroPoint = None if q.zeroPoint is None else np.asarray(q.zeroPoint[:1], dtype=np.int64)
            q.quantizedDimension = 0
            changed += 1
    return changed


def single_weight_zero_points(model_object) -> int:
    """TFLM only: store one zero point, in place, for every per-channel quantization whose zero
    points are all equal (weights' are all 0); returns how many arrays were shortened.

    TFLM reads a one-element zero-point array as that value for every channel ("a space-saving
    optimization", ``micro_allocator.cc``); LiteRT refuses such a file (zero points and scales
    must be as many), so only what the firmware embeds is written this way.
    """
    changed = 0
    for graph in model_object.subgraphs or []:
        for tensor in graph.tensors or []:
            q = tensor.quantization
            if q is None or q.scale is None or q.zeroPoint is None or len(q.zeroPoint) <= 1:
                continue
            zero_points = np.asarray(q.zeroPoint, dtype=np.int64)
            if len(zero_points) == len(q.scale) and np.all(zero_points == zero_points[0]):
                q.zeroPoint = zero_points[:1]
                changed += 1
    return changed


#: Start of every byte array (buffer data): the schema's ``force_align`` for TFLM's kernels.
BYTE_ARRAY_ALIGNMENT = 16


def _sharing_builder():
    import flatbuffers

    class SharingBuilder(flatbuffers.Builder):
        """A flatbuffers builder that writes each distinct array, string and table once.

        The generated ``Pack`` methods write every tensor's quantization, shape and name, and
        every operator's options, as objects of their own; a flatbuffer may point many
        references at one object, and readers (TFLM, LiteRT, the verifier) cannot tell the
        difference. The flatbuffers library shares vtables and, on request, strings
        (``CreateSharedString``, which the generated code does not call), but not arrays or
        tables, hence this class. A table is shared when its fields hold the same scalars and
        point at the same objects; it is written, compared, and rolled back if it is a repeat.
        Byte arrays also start on :data:`BYTE_ARRAY_ALIGNMENT`.
        """

        def __init__(self, size: int = 1024):
            super().__init__(size)
            self._arrays: dict[tuple[str, bytes], int] = {}
            self._strings: dict[tuple, int] = {}
            self._tables: dict[tuple, int] = {}
            self._fields: list | None = None  # the open table's (slot, kind, value), or None
            self._table_start = (0, 0)  # (Offset(), len(vtables)) when the open table started

        def CreateNumpyVector(self, x):  # noqa: N802 (flatbuffers' method name)
            x = np.ascontiguousarray(x)
            key = (x.dtype.str, x.tobytes())
            if key not in self._arrays:
                if x.dtype.itemsize == 1:
                    # What StartVector does with a vector's own alignment, for 16 bytes.
                    self.Prep(BYTE_ARRAY_ALIGNMENT, x.size)
                self._arrays[key] = super().CreateNumpyVector(x)
            return self._arrays[key]

        def CreateString(self, s, encoding="utf-8", errors="strict"):  # noqa: N802
            key = (s, encoding)
            if key not in self._strings:
                self._strings[key] = super().CreateString(s, encoding, errors)
            return self._strings[key]

        def StartObject(self, numfields):  # noqa: N802
            self._table_start = (self.Offset(), len(self.vtables))
            super().StartObject(numfields)
            self._fields = [numfields]

        def PrependSlot(self, flags, o, x, d):  # noqa: N802
            if x != d or (self.forceDefaults and d is not None):
                self._fields.append((o, flags, x))
            super().PrependSlot(flags, o, x, d)

        def PrependUOffsetTRelativeSlot(self, o, x, d):  # noqa: N802
            if x != d or self.forceDefaults:
                self._fields.append((o, "offset", x))  # x: the target's position, not relative
            super().PrependUOffsetTRelativeSlot(o, x, d)

        def PrependStructSlot(self, v, x, d):  # noqa: N802
            if x != d:
                self._fields = None  # inline structs are not tracked: never shared
            super().PrependStructSlot(v, x, d)

        def EndObject(self):  # noqa: N802
            offset = super().EndObject()
            key, self._fields = self._fields, None
            if key is None:
                return offset
            key = tuple(key)
            if key not in self._tables:
                self._tables[key] = offset
                return offset
            start, vtables = self._table_start
            self.head = len(self.Bytes) - start  # drop the repeat (and a vtable it may have added)
            for added in list(self.vtables)[vtables:]:
                del self.vtables[added]
            return self._tables[key]

    return SharingBuilder()


def _without_empty_buffers(model_object):
    """A copy of a ``ModelT`` whose data-less tensors all use buffer 0 (the schema's empty
    sentinel, which every reader treats as "no data") and whose unused empty buffers are gone.

    The converter gives every activation a buffer of its own, all empty: a table and a vector
    entry each, for nothing.
    """
    import copy

    model = copy.deepcopy(model_object)
    buffers = model.buffers or []
    tensors = [t for graph in model.subgraphs or [] for t in graph.tensors or []]
    for tensor in tensors:
        if 0 <= tensor.buffer < len(buffers) and not buffer_has_data(buffers[tensor.buffer]):
            tensor.buffer = 0
    entries = model.metadata or []
    kept = sorted({0} | {t.buffer for t in tensors} | {e.buffer for e in entries}
                  | set(indices(model.metadataBuffer)))
    if not buffers or len(kept) == len(buffers) or kept[-1] >= len(buffers):
        return model  # nothing to drop (or a reference out of range: left for the reader to report)
    new_index = {old: new for new, old in enumerate(kept)}
    model.buffers = [buffers[i] for i in kept]
    for tensor in tensors:
        tensor.buffer = new_index[tensor.buffer]
    for entry in entries:
        entry.buffer = new_index[entry.buffer]
    if model.metadataBuffer is not None:
        model.metadataBuffer = [new_index[i] for i in indices(model.metadataBuffer)]
    return model


def _without_redundant_ranks(model):
    """``model`` with ``has_rank`` left at its default (false) on every tensor that has a shape.

    The converter sets it on every tensor, a field of each tensor table. Readers take a tensor's
    rank as known when it has a shape *or* ``has_rank`` (LiteRT's verifier:
    ``shape() != nullptr || has_rank()``; TFLM never reads it), so only a scalar, whose shape
    is empty, needs it."""
    for graph in model.subgraphs or []:
        for tensor in graph.tensors or []:
            if tensor.shape is not None and len(tensor.shape) > 0:
                tensor.hasRank = False
    return model


def pack_model(model_object) -> bytes:
    """Serialise a ``ModelT`` compactly: shared arrays, strings and tables, one empty buffer
    for every tensor without data, no ``has_rank`` where a shape says the rank, and byte arrays
    aligned to 16 bytes. ``model_object`` itself is not changed."""
    builder = _sharing_builder()
    model = _without_redundant_ranks(_without_empty_buffers(model_object))
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())
