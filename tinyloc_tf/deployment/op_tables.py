"""Lookup tables for the int8 activations of a model, for the firmware's table kernel.

::

    tables = activation_tables("m.tflite")   # [OpTable(op="LOGISTIC", ..., values int8 [256])]

An int8 element-wise activation (LOGISTIC, TANH) maps each of the 256 input values to one
output value, fixed by the input's quantization (TFLM fixes the output's). TFLM computes it per
element with gemmlowp's fixed-point functions (hundreds of instructions per element on a
Cortex-M; CMSIS-NN has no int8 kernel for either), which is most of the invoke of a small Mamba
on the M55. The tables hold those same functions evaluated once on all 256 inputs, with the AOT
compiler's port of TFLM's arithmetic (:func:`tinyloc_tf.deployment.aot.fixedpoint.sigmoid_table`,
checked bit-exact against TFLM's kernels in ``tests/test_aot_kernels.py``); the firmware's table
kernel (``tflm_app/src/table_kernel.cc``, ``make TABLES=1``) then answers with one load per
element, and every deploy compares its emissions with the host TFLM's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyloc_tf.errors import TinylocError

#: Element-wise int8 operators whose output depends on the input value alone.
TABLE_OPS = ("LOGISTIC", "TANH")


#: TFLM's fixed output quantization of the int8 activations: (scale, zero point).
OUTPUT_QUANTIZATION = {"LOGISTIC": (1.0 / 256, -128), "TANH": (1.0 / 128, 0)}


@dataclass(frozen=True)
class OpTable:
    """One activation table: ``values[q & 0xff]`` is the output for int8 input ``q`` (indexed by
    the input's bit pattern, as the AOT compiler's tables)."""

    op: str
    input_scale: float
    input_zero_point: int
    output_scale: float
    output_zero_point: int
    values: tuple[int, ...]  # 256 int8 values

    @property
    def key(self) -> tuple:
        return self.op, self.input_scale, self.input_zero_point, self.output_scale, self.output_zero_point


def activation_tables(model) -> list[OpTable]:
    """One table per distinct (operator, quantization) of the model's int8 ``TABLE_OPS`` nodes."""
    from tinyloc_tf.compression.flatbuffer import indices, read_model, tensor_quantization
    from tinyloc_tf.deployment.aot import fixedpoint, quant

    fb = read_model(model)
    tables: dict[tuple, OpTable] = {}
    for op in fb.operators:
        name = fb.op_name(op)
        if name not in TABLE_OPS:
            continue
        source, target = fb.tensors[indices(op.inputs)[0]], fb.tensors[indices(op.outputs)[0]]
        if fb.type_name(source) != "INT8" or fb.type_name(target) != "INT8":
            continue  # only int8 nodes get a table; the firmware registers the table kernel only then
        (in_scale,), (in_zp,), _ = tensor_quantization(source)
        (out_scale,), (out_zp,), _ = tensor_quantization(target)
        if (float(out_scale), int(out_zp)) != (np.float32(OUTPUT_QUANTIZATION[name][0]), OUTPUT_QUANTIZATION[name][1]):
            raise TinylocError(f"{fb.where}: an int8 {name} has output scale {out_scale} and zero point {out_zp}; "
                               f"TFLM runs it only with {OUTPUT_QUANTIZATION[name]}")
        key = (name, float(in_scale), int(in_zp), float(out_scale), int(out_zp))
        if key not in tables:
            multiplier, left_shift, radius = quant.sigmoid_input_params(np.float32(in_scale))
            values = fixedpoint.sigmoid_table(name.lower(), int(in_zp), radius, multiplier, left_shift)
            tables[key] = OpTable(*key, values=tuple(int(v) for v in values))
    return list(tables.values())
