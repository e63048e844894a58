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

import copy

import numpy as np


def single_row_fully_connected_2d(buf: bytes) -> tuple[bytes, int]:
    """``buf`` with each single-row, 3-D-output FULLY_CONNECTED made 2-D; and how many."""
    from tinyloc_tf.compression.flatbuffer import builtin_code, indices, pack_model, tflite_schema, unpack_model

    schema = tflite_schema()
    model = unpack_model(buf)
    graph = model.subgraphs[0]
    codes = model.operatorCodes
    fc = schema.BuiltinOperator.FULLY_CONNECTED
    rewritten, operators = 0, []
    reshape_code = None
    for op in graph.operators or []:
        operators.append(op)
        if builtin_code(codes[op.opcodeIndex]) != fc or op.builtinOptions is None:
            continue
        out_index = indices(op.outputs)[0]
        out = graph.tensors[out_index]
        shape = indices(out.shape)
        if not op.builtinOptions.keepNumDims or len(shape) < 3 or int(np.prod(shape[:-1])) != 1:
            continue
        if reshape_code is None:
            reshape_code = _opcode_index(model, schema.BuiltinOperator.RESHAPE)
        flat = copy.deepcopy(out)
        flat.shape = np.array([1, shape[-1]], dtype=np.int32)
        flat.shapeSignature = None
        flat.name = (out.name or b"") + b"/2d" if isinstance(out.name, bytes) else f"{out.name or ''}/2d"
        model.buffers.append(schema.BufferT())
        flat.buffer = len(model.buffers) - 1
        graph.tensors.append(flat)
        flat_index = len(graph.tensors) - 1
        op.outputs = np.array([flat_index], dtype=np.int32)
        op.builtinOptions.keepNumDims = False
        reshape = schema.OperatorT()
        reshape.opcodeIndex = reshape_code
        reshape.inputs = np.array([flat_index], dtype=np.int32)
        reshape.outputs = np.array([out_index], dtype=np.int32)
        reshape.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
        reshape.builtinOptions = schema.ReshapeOptionsT()
        reshape.builtinOptions.newShape = np.array(shape, dtype=np.int32)
        operators.append(reshape)
        rewritten += 1
    if not rewritten:
        return buf, 0
    graph.operators = operators
    return pack_model(model), rewritten


def _opcode_index(model, builtin: int) -> int:
    """Index of ``builtin``'s operator code in ``model``, added when the model has none."""
    from tinyloc_tf.compression.flatbuffer import builtin_code, tflite_schema

    for i, code in enumerate(model.operatorCodes):
        if builtin_code(code) == builtin:
            return i
    code = tflite_schema().OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1
