"""Deploy-time rewrites of a ``.tflite`` graph for TFLM's kernels: same arithmetic, other layout.

::

    buf, count = single_row_fully_connected_2d(buf)

**Single-row fully connected layers as 2-D.** A Keras ``Dense`` over ``[batch, T, F]`` converts to
a FULLY_CONNECTED that keeps its 3-D output (``keep_num_dims``). TFLM's CMSIS-NN kernel hands
such a layer, when its depth is a multiple of 4, to ``arm_convolve_1x1_s8_fast`` instead of
``arm_fully_connected_s8``; on a Cortex-M4 (DSP extension, no Helium) that path runs a single row
(T = 1, the UJIIndoorLoc models) at 0.64x of the reference kernel, against 0.11x on the M55.
On the M55 (Helium) the 3-D form is the faster one, so ``deploy --optimize`` rewrites for
targets without Helium only. The rewrite gives every FULLY_CONNECTED whose output has one row a
2-D output ``[1, units]`` and
a RESHAPE back to the original tensor, so the rest of the graph is unchanged. Both kernels
compute the same int8 sums and requantization; the deploy check compares every emission with
the host TFLM on the original model.
"""

from __future__ import annotations

import numpy as np


def single_row_fully_connected_2d(buf: bytes) -> tuple[bytes, int]:
    """``buf`` with each single-row, 3-D-output FULLY_CONNECTED made 2-D; and how many."""
    from tinyloc_tf.compression.flatbuffer import (add_tensor_like, builtin_code, decode_name, indices, opcode_index,
                                                   pack_model, tflite_schema, unpack_model)

    schema = tflite_schema()
    model = unpack_model(buf)
    graph = model.subgraphs[0]
    operators, rewritten = [], 0
    for op in graph.operators or []:
        operators.append(op)
        if builtin_code(model.operatorCodes[op.opcodeIndex]) != schema.BuiltinOperator.FULLY_CONNECTED:
            continue
        out = indices(op.outputs)[0]
        shape = indices(graph.tensors[out].shape)
        if op.builtinOptions is None or not op.builtinOptions.keepNumDims or len(shape) < 3 or np.prod(shape[:-1]) != 1:
            continue
        flat = add_tensor_like(model, graph, out)
        graph.tensors[flat].shape = np.array([1, shape[-1]], dtype=np.int32)
        graph.tensors[flat].shapeSignature = None
        graph.tensors[flat].name = decode_name(graph.tensors[out].name) + "/2d"
        op.outputs = np.array([flat], dtype=np.int32)
        op.builtinOptions.keepNumDims = False
        reshape = schema.OperatorT()
        reshape.opcodeIndex = opcode_index(model, schema.BuiltinOperator.RESHAPE)
        reshape.inputs = np.array([flat], dtype=np.int32)
        reshape.outputs = np.array([out], dtype=np.int32)
        reshape.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
        reshape.builtinOptions = schema.ReshapeOptionsT()
        reshape.builtinOptions.newShape = np.array(shape, dtype=np.int32)
        operators.append(reshape)
        rewritten += 1
    if not rewritten:
        return buf, 0
    graph.operators = operators
    return pack_model(model), rewritten
