"""Lookup tables for the int8 activations of a model, computed by the host TFLM itself.

::

    tables = activation_tables("m.tflite")   # [OpTable(op="LOGISTIC", ..., values int8 [256])]

An int8 element-wise activation (LOGISTIC, TANH) maps each of the 256 input values to one
output value, fixed by the two tensors' quantization. TFLM computes it per element with
fixed-point arithmetic (hundreds of instructions per element on a Cortex-M; CMSIS-NN has no
int8 kernel for either), which is most of the invoke of a small Mamba on the M55. Here the
host TFLM (the tflite-micro wheel, TFLM's reference kernels) runs each such operator once
over all 256 input values; the firmware's table kernel (``tflm_app/src/table_kernel.cc``,
``make TABLES=1``) then answers with one load per element. The tables come from the same
code the firmware would run, so the result is bit-exact with it by construction (and the
deploy check compares every emission anyway).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from tinyloc_tf.errors import TinylocError

#: Element-wise int8 operators whose output depends on the input value alone.
TABLE_OPS = ("LOGISTIC", "TANH")


@dataclass(frozen=True)
class OpTable:
    """One activation table: ``values[q + 128]`` is the output for int8 input ``q``."""

    op: str
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    values: tuple[int, ...]  # 256 int8 values

    @property
    def key(self) -> tuple:
        return self.op, self.input_scale, self.input_zero_point, self.output_scale, self.output_zero_point


def _single_op_model(fb, op) -> bytes:
    """``fb``'s operator ``op`` alone, over a ``[256]`` input: a model of one node."""
    from tinyloc_tf.compression.flatbuffer import indices, pack_model

    model = copy.deepcopy(fb.model)
    graph = model.subgraphs[0]
    node = copy.deepcopy(op)
    source, target = indices(node.inputs)[0], indices(node.outputs)[0]
    for index in (source, target):
        graph.tensors[index].shape = np.array([256], dtype=np.int32)
        graph.tensors[index].shapeSignature = None
    graph.operators = [node]
    graph.inputs = np.array([source], dtype=np.int32)
    graph.outputs = np.array([target], dtype=np.int32)
    model.subgraphs = [graph]
    model.signatureDefs = []
    return pack_model(model)


def activation_tables(model) -> list[OpTable]:
    """One table per distinct (operator, quantization) of the model's int8 ``TABLE_OPS`` nodes."""
    from tflite_micro.python.tflite_micro import runtime

    from tinyloc_tf.compression.flatbuffer import indices, read_model, tensor_quantization

    fb = read_model(model)
    tables: dict[tuple, OpTable] = {}
    every_input = np.arange(-128, 128, dtype=np.int8)
    for op in fb.operators:
        name = fb.op_name(op)
        if name not in TABLE_OPS:
            continue
        source, target = fb.tensors[indices(op.inputs)[0]], fb.tensors[indices(op.outputs)[0]]
        if fb.type_name(source) != "INT8" or fb.type_name(target) != "INT8":
            continue  # only int8 nodes get a table; the firmware registers the table kernel only then
        (in_scale,), (in_zp,), _ = tensor_quantization(source)
        (out_scale,), (out_zp,), _ = tensor_quantization(target)
        key = (name, float(in_scale), int(in_zp), float(out_scale), int(out_zp))
        if key in tables:
            continue
        interpreter = runtime.Interpreter.from_bytes(_single_op_model(fb, op), arena_size=1 << 20)  # the graph keeps all its tensors
        interpreter.set_input(every_input, 0)
        interpreter.invoke()
        values = np.asarray(interpreter.get_output(0)).reshape(-1)
        if values.shape != (256,) or values.dtype != np.int8:
            raise TinylocError(f"{fb.where}: the {name} table came out as {values.dtype} {values.shape}")
        tables[key] = OpTable(*key, values=tuple(int(v) for v in values))
    return list(tables.values())
