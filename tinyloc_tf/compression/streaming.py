"""Streaming Mamba -> ``.tflite``: the step model with its state as inputs and outputs.

::

    result = convert_streaming(tagger, calibration=[stream, ...], quant="int8", metadata={...})
    layout = streaming_layout(result.tflite)    # which input / output is which, state shapes

The step model (:mod:`tinyloc_tf.models.mamba_step`) is converted like a window model
(batch 1, names stripped, metadata embedded), with these differences:

- **Calibration on streams.** The representative set is the step model's own inputs along
  whole training streams (``[n, F]`` sequences, run in float from a zero state): samples and
  the states that really occur after minutes, not only the first 20 samples of a window.
  A seeded subset of ``representative_size`` steps is used.
- **Operators next to their readers.** :func:`sink_operators` moves an operator to just before
  its first reader where that shortens what the arena holds (the AOT plan of the house Mamba
  H16L1: 1,792 -> 1,312 B).
- **One operator per norm.** The int8 step model writes each RMSNorm as an L2 normalization
  (:func:`~tinyloc_tf.models.mamba_step.l2_rms_norm`), one L2_NORMALIZATION operator instead
  of five; TFLite's 16x8 quantizer has no L2_NORMALIZATION, so int16x8 keeps the five.
- **Canonical I/O order.** The converter orders inputs and outputs its own way; they are put
  back in the order ``sample, conv_state_0, ssm_state_0, ...`` and ``emissions,
  conv_state_0, ssm_state_0, ...`` (read from the signature before names are stripped), the
  order :func:`streaming_layout` names them in.
- **State feedback without requantization.** The new state is the next call's input, so each
  state input must carry the quantization of its output. The converter calibrates the two
  separately and gives them nearly, not exactly, the same scale. Where the input's readers all
  rescale (MUL, ADD, FULLY_CONNECTED, ...), the input simply takes the output's scale and zero
  point (``retied_state_inputs``): no op, and the state is never rounded twice. Where a reader
  passes bytes through (CONCATENATION, RESHAPE, ...) an int8 -> int8 QUANTIZE (TFLM's requantize
  kernel) is appended to the output instead (``requantized_state_outputs``). The runtime then
  copies state bytes from output to input, on the host as on the MCU.
- **Per-tensor weights in int16x8.** TFLite's 16x8 quantizer cannot quantize the depthwise
  convolution per tensor, so ``per_tensor_weights`` converts int16x8 per channel and then
  quantizes every weight tensor again, once, from the float step model's weights
  (:func:`weights_per_tensor_from_float`); int8 uses TFLite's own per-tensor quantization.
- **Power-of-two int16 scales.** The int16x8 step model's int16 scales are rounded up to powers
  of two (:func:`power_of_two_scales`): under a bit of 15 lost, and tensors then share the
  quantization tables that are most of a small step model's flash.
- **Shapes as options.** A RESHAPE's constant shape input becomes its options
  (:func:`reshape_shapes_as_options`): TFLM reads the output tensor's shape anyway.
"""

from __future__ import annotations

import copy

import numpy as np

from tinyloc_tf.errors import TinylocError

STREAMING_QUANT_MODES = ("float32", "int8", "int16x8")
DEFAULT_REPRESENTATIVE_STEPS = 512


def calibration_steps(step_model, streams, size: int = DEFAULT_REPRESENTATIVE_STEPS, seed: int = 0,
                      progress: bool = False) -> list[np.ndarray]:
    """Inputs of the step model along ``streams`` (a list of float ``[n, F]``), a seeded subset.

    Returns one array per model input, ``[size, *shape]``: samples and the states before them.
    """
    from tinyloc_tf.models.mamba_step import run_stream

    streams = [np.asarray(s, dtype=np.float32) for s in streams]
    if not streams or not any(len(s) for s in streams):
        raise TinylocError("streaming calibration needs at least one non-empty training stream [n, F]")
    for s in streams:
        if not np.isfinite(s).all():
            raise TinylocError("a calibration stream holds NaN or infinite values")
    if progress:
        from tqdm import tqdm

        streams = tqdm(streams, desc="calibration streams (float)", unit="stream", leave=False)
    inputs = [[] for _ in step_model.inputs]
    for stream in streams:
        if not len(stream):
            continue
        _, states = run_stream(step_model, stream, return_states=True)
        inputs[0].append(stream.reshape(len(stream), *step_model.inputs[0].shape[1:]))
        for store, values in zip(inputs[1:], states):
            store.append(values)
    inputs = [np.concatenate(parts) for parts in inputs]
    total = len(inputs[0])
    if size < total:
        rows = np.sort(np.random.default_rng(seed).choice(total, size=int(size), replace=False))
        inputs = [values[rows] for values in inputs]
    return inputs


def _signature_order(model_object, input_names: list[str], output_count: int) -> tuple[list[int], list[int]]:
    """Tensor indices of the step model's inputs (by Keras name) and outputs (``output_k``)."""
    defs = model_object.signatureDefs or []
    if len(defs) != 1:
        raise TinylocError(f"the converted step model has {len(defs)} signatures, expected 1")

    def name(entry):
        return entry.name.decode() if isinstance(entry.name, bytes) else str(entry.name)

    ins = {name(e): int(e.tensorIndex) for e in defs[0].inputs}
    outs = {name(e): int(e.tensorIndex) for e in defs[0].outputs}
    missing = [n for n in input_names if n not in ins] + [f"output_{k}" for k in range(output_count)
                                                           if f"output_{k}" not in outs]
    if missing:
        raise TinylocError(f"the converted step model's signature lacks {', '.join(missing)} "
                           f"(has inputs {sorted(ins)}, outputs {sorted(outs)})")
    return [ins[n] for n in input_names], [outs[f"output_{k}"] for k in range(output_count)]


def _quantization(tensor) -> tuple[tuple[float, ...], tuple[int, ...]]:
    q = tensor.quantization
    if q is None or q.scale is None:
        return (), ()
    return tuple(float(s) for s in np.atleast_1d(q.scale)), tuple(int(z) for z in np.atleast_1d(q.zeroPoint))


#: Operators whose int8 output must carry their input's quantization (they move bytes, no
#: arithmetic): an input feeding one of them cannot change its scale alone.
PASS_THROUGH_OPS = frozenset({"CONCATENATION", "RESHAPE", "STRIDED_SLICE", "SLICE", "SPLIT", "SPLIT_V", "PACK",
                              "UNPACK", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS", "GATHER", "PAD", "MAXIMUM",
                              "MINIMUM", "MAX_POOL_2D"})


def _rescaling_consumers_only(model_object, graph, tensor: int) -> bool:
    """Whether every operator reading ``tensor`` computes its output scale from its inputs'
    (so the tensor may take another scale); False when one passes its bytes through."""
    from tinyloc_tf.compression.flatbuffer import indices, opcode_name

    names = [opcode_name(code) for code in model_object.operatorCodes or []]
    consumers = [names[op.opcodeIndex] for op in graph.operators or [] if tensor in indices(op.inputs)]
    return bool(consumers) and not any(name in PASS_THROUGH_OPS for name in consumers)


def _append_requantize(model_object, graph, source: int, like: int) -> int:
    """Append ``QUANTIZE(source) -> new tensor`` with the quantization of tensor ``like``."""
    from tinyloc_tf.compression.flatbuffer import add_tensor_like, opcode_index, tflite_schema

    schema = tflite_schema()
    code_index = opcode_index(model_object, schema.BuiltinOperator.QUANTIZE, version=2)
    out = add_tensor_like(model_object, graph, like)
    op = schema.OperatorT()
    op.opcodeIndex = code_index
    op.inputs = np.array([source], dtype=np.int32)
    op.outputs = np.array([out], dtype=np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.QuantizeOptions
    op.builtinOptions = schema.QuantizeOptionsT()
    graph.operators.append(op)
    return out


def drop_identity_requantize(model_object, graph) -> int:
    """Take out every QUANTIZE whose output has its input's type, scale and zero point (its
    readers read the input instead) and then the tensors and operator codes left unused.

    Retying a state input to its output's quantization (:func:`canonicalise`) can leave the
    converter's QUANTIZE in front of the conv buffer's CONCATENATION with nothing to do: an
    operator, a tensor and a requantization per block, for outputs that are identical without
    them. Returns how many were taken out."""
    from tinyloc_tf.compression.flatbuffer import drop_unused, indices, opcode_name

    names = [opcode_name(code) for code in model_object.operatorCodes or []]
    outputs = set(indices(graph.outputs))
    replace, kept = {}, []
    for op in graph.operators or []:
        if names[op.opcodeIndex] == "QUANTIZE":
            (source,), (target,) = indices(op.inputs), indices(op.outputs)
            a, b = graph.tensors[source], graph.tensors[target]
            if target not in outputs and a.type == b.type and _quantization(a) == _quantization(b) != ((), ()):
                replace[target] = source
                continue
        kept.append(op)
    if not replace:
        return 0

    def source_of(tensor: int) -> int:  # through a chain of identity QUANTIZEs
        while tensor in replace:
            tensor = replace[tensor]
        return tensor

    for op in kept:
        op.inputs = np.array([source_of(t) for t in indices(op.inputs)], dtype=np.int32)
    graph.operators = kept
    drop_unused(model_object)
    return len(replace)


def sink_operators(model_object, graph) -> int:
    """Move operators later, to just before their first reader, where that shortens what is live.

    The converter orders operators its own way; in the step graph it computes ``B (dt x)``
    (``[N, D]``) before the decay chain, so that product sits in the arena through six more
    ``[N, D]`` operators. An operator is moved when its outputs (bytes no longer held in the
    meantime) outweigh the inputs whose last read it delays. Only the order changes: every
    operator still follows what it reads, and the outputs are identical. Returns how many moved.
    """
    from tinyloc_tf.compression.flatbuffer import buffer_has_data, indices, tensor_nbytes

    buffers = model_object.buffers or []
    constant = {i for i, t in enumerate(graph.tensors) if 0 < t.buffer < len(buffers) and buffer_has_data(buffers[t.buffer])}
    outputs = set(indices(graph.outputs))
    ops = list(graph.operators)
    moved = 0
    for position in range(len(ops) - 1, -1, -1):  # moving an op later leaves the ones before it in place
        produced = set(indices(ops[position].outputs))
        readers = [j for j in range(position + 1, len(ops)) if produced & set(indices(ops[j].inputs))]
        if not readers or readers[0] == position + 1:
            continue
        target = readers[0]

        def last_read(tensor):
            if tensor in outputs:
                return len(ops)
            return max(j for j, op in enumerate(ops) if tensor in indices(op.inputs))

        delayed = sum(tensor_nbytes(graph.tensors[t]) for t in set(indices(ops[position].inputs))
                      if t >= 0 and t not in constant and last_read(t) < target)
        freed = sum(tensor_nbytes(graph.tensors[t]) for t in produced if t not in outputs)
        if freed > delayed:
            ops.insert(target - 1, ops.pop(position))  # after the pop, the first reader is at target - 1
            moved += 1
    graph.operators = ops
    return moved


def reshape_shapes_as_options(model_object, graph) -> int:
    """Give every RESHAPE whose shape is a constant input that shape as its options instead,
    and drop the input (and the constant, once nothing else reads it).

    TFLM takes a RESHAPE's output shape from its output tensor and the shape input is optional
    there (``reshape_common.cc``: one input or two); LiteRT reads ``ReshapeOptions.new_shape``
    when there is no shape input, so the file still loads there. An options vector costs less
    than a tensor table, its buffer and its data: 96 B in the house H16L1 int16x8 step model, whose
    RESHAPE turns ``dt`` into a column. Outputs are identical. Returns how many were rewritten."""
    from tinyloc_tf.compression.flatbuffer import buffer_has_data, drop_unused, indices, opcode_name, tflite_schema

    schema = tflite_schema()
    buffers = model_object.buffers or []
    rewritten = 0
    for op in graph.operators or []:
        inputs = indices(op.inputs)
        if opcode_name(model_object.operatorCodes[op.opcodeIndex]) != "RESHAPE" or len(inputs) != 2:
            continue
        shape = graph.tensors[inputs[1]]
        if not (0 < shape.buffer < len(buffers) and buffer_has_data(buffers[shape.buffer])):
            continue  # a shape computed at run time stays an input
        options = schema.ReshapeOptionsT()
        options.newShape = np.array(indices(graph.tensors[indices(op.outputs)[0]].shape), dtype=np.int32)
        op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.ReshapeOptions, options
        op.inputs = np.array(inputs[:1], dtype=np.int32)
        rewritten += 1
    if rewritten:
        drop_unused(model_object)
    return rewritten


def canonicalise(raw: bytes, input_names: list[str], output_count: int) -> tuple[bytes, dict]:
    """Inputs/outputs in the step model's order, each state input quantized like its output.

    Returns the flatbuffer and what was done, by state position: ``retied_state_inputs`` (the
    input took the output's quantization), ``requantized_state_outputs`` (a QUANTIZE appended);
    ``identity_requantize_dropped`` (:func:`drop_identity_requantize`), ``moved_operators``
    (:func:`sink_operators`) and ``reshape_shapes_as_options`` (:func:`reshape_shapes_as_options`).
    """
    from tinyloc_tf.compression.flatbuffer import pack_model, unpack_model

    model_object = unpack_model(raw)
    graph = model_object.subgraphs[0]
    inputs, outputs = _signature_order(model_object, input_names, output_count)
    requantized, retied = [], []
    for position in range(1, output_count):
        out, inp = outputs[position], inputs[position]
        if graph.tensors[out].type != graph.tensors[inp].type or list(graph.tensors[out].shape) != list(
                graph.tensors[inp].shape):
            raise TinylocError(f"state output {position} ({list(graph.tensors[out].shape)}) does not match "
                               f"its input ({list(graph.tensors[inp].shape)})")
        if _quantization(graph.tensors[out]) == _quantization(graph.tensors[inp]):
            continue
        if _rescaling_consumers_only(model_object, graph, inp):
            # Give the state input the output's scale: the kernels reading it rescale from
            # whatever scale it has, and the state is never rounded twice.
            graph.tensors[inp].quantization = copy.deepcopy(graph.tensors[out].quantization)
            retied.append(position)
        else:
            outputs[position] = _append_requantize(model_object, graph, out, inp)
            requantized.append(position)
    graph.inputs = np.array(inputs, dtype=np.int32)
    graph.outputs = np.array(outputs, dtype=np.int32)
    # The signature still names the converter's tensors; runtimes here use indices only.
    model_object.signatureDefs = []
    dropped = drop_identity_requantize(model_object, graph)
    moved = sink_operators(model_object, graph)
    reshapes = reshape_shapes_as_options(model_object, graph)
    return pack_model(model_object), {"requantized_state_outputs": requantized, "retied_state_inputs": retied,
                                      "identity_requantize_dropped": dropped, "moved_operators": moved,
                                      "reshape_shapes_as_options": reshapes}


def step_input_names(layers: int) -> list[str]:
    """What :func:`streaming_layout` calls a step model's inputs, by position: ``sample``, then
    ``conv_state_l`` and ``ssm_state_l`` per block ``l`` (the order :func:`canonicalise` puts
    them in)."""
    return ["sample"] + [f"{kind}_state_{layer}" for layer in range(layers) for kind in ("conv", "ssm")]


def is_step_model(model) -> bool:
    """Whether ``model`` (a ``.tflite`` path, bytes or a read :class:`Flatbuffer`) is a streaming
    step model: its metadata carries the ``streaming`` entry ``convert --streaming`` writes (a
    file without tinyloc metadata is not one)."""
    from tinyloc_tf.compression.flatbuffer import Flatbuffer, read_model
    from tinyloc_tf.compression.metadata import METADATA_NAME, metadata_of

    fb = model if isinstance(model, Flatbuffer) else read_model(model, "model")
    return METADATA_NAME in fb.metadata() and isinstance(metadata_of(fb).get("streaming"), dict)


#: What to say when a window-model command is given a step model.
STEP_MODEL_HINT = "a streaming step model (a sample and the state in, emissions and the new state out)"


def streaming_layout(model) -> dict:
    """Which input and output of a step ``.tflite`` is which (raises for a window model).

    Returns ``{"inputs", "outputs"}`` (names in the order of the graph's inputs and outputs:
    ``sample, conv_state_0, ssm_state_0, ...`` and ``emissions, ...``), ``state_shapes``
    (without the batch axis), ``state_bytes`` and the ``window_T`` the model was trained on:
    the graph's inputs give all but the last, the metadata's ``streaming`` entry the last.
    """
    from tinyloc_tf.compression.flatbuffer import NUMPY_DTYPES, read_model
    from tinyloc_tf.compression.metadata import metadata_of

    fb = read_model(model, "model")
    marker = metadata_of(fb).get("streaming")  # a file without tinyloc metadata: its own error
    if not isinstance(marker, dict):
        raise TinylocError("this .tflite is a window model, not a streaming step model "
                           "(convert with `tinyloc convert RUN --streaming`)")
    inputs = [fb.tensors[i] for i in fb.inputs]
    if len(inputs) < 3 or len(inputs) % 2 == 0 or len(fb.outputs) != len(inputs):
        raise TinylocError(f"a step model has a sample and two states per block as inputs and as many outputs; "
                           f"this one has {len(inputs)} inputs and {len(fb.outputs)} outputs")
    names = step_input_names((len(inputs) - 1) // 2)
    shapes = [[int(d) for d in t.shape[1:]] for t in inputs[1:]]
    state_bytes = sum(int(np.prod(shape)) * np.dtype(NUMPY_DTYPES[fb.type_name(t)]).itemsize
                      for shape, t in zip(shapes, inputs[1:]))
    return {"inputs": names, "outputs": ["emissions"] + names[1:], "state_shapes": shapes,
            "state_bytes": state_bytes, "window_T": marker.get("window_T")}


def per_tensor_weights_refusal(quant: str) -> str | None:
    """Why ``--per-tensor-weights`` cannot make a step model in ``quant`` (None for int8 and
    int16x8): a float32 model has no int8 weights."""
    if quant in ("int8", "int16x8"):
        return None
    return f"--per-tensor-weights converts int8 and int16x8 step models, not {quant}"


#: Operators whose second input is an int8 weight tensor (one scale per output channel in
#: TFLite's 16x8 files) and whose optional third input is its bias.
WEIGHT_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D")


def _weight_operands(op) -> tuple[int, int, int]:
    """Tensor indices of a weight operator's input, weights and bias (-1 when it has none)."""
    from tinyloc_tf.compression.flatbuffer import indices

    inputs = indices(op.inputs)
    return inputs[0], inputs[1], (inputs[2] if len(inputs) > 2 else -1)


def _weight_signature(fb, op) -> tuple:
    """What a quantized weight operator and its float twin share: the operator, the weights'
    shape and the bias's shape (None without one)."""
    from tinyloc_tf.compression.flatbuffer import indices

    _, w, b = _weight_operands(op)
    return (fb.op_name(op), tuple(indices(fb.tensors[w].shape)),
            tuple(indices(fb.tensors[b].shape)) if b >= 0 else None)


def _rounds_to(fb_q, tensor_q, fb_f, tensor_f) -> bool:
    """Whether the float tensor is the one TFLite quantized into the (per-channel) integer
    one: every value within half a step of its dequantized value (a float32 tolerance aside)."""
    from tinyloc_tf.compression.flatbuffer import tensor_quantization

    q, f = fb_q.tensor_data(fb_q.tensors[tensor_q]), fb_f.tensor_data(fb_f.tensors[tensor_f])
    scales, zero_points, dim = tensor_quantization(fb_q.tensors[tensor_q])
    if q is None or f is None or scales is None or f.dtype != np.float32 or q.shape != f.shape:
        return False
    if np.any(zero_points != 0):
        return False
    shape = [1] * q.ndim
    if len(scales) > 1:
        if not 0 <= dim < q.ndim or q.shape[dim] != len(scales):
            return False
        shape[dim] = -1
    step = scales.astype(np.float64).reshape(shape)
    f = f.astype(np.float64)
    return bool(np.all(np.abs(q * step - f) <= step * (0.5 + 1e-3) + 1e-6 * np.abs(f)))


def _float_twins(fb_q, fb_f) -> list[tuple[int, object, object]]:
    """Pair every weight operator of the quantized step model ``fb_q`` with the operator of the
    float one ``fb_f`` whose weights TFLite quantized into it: same operator, same weight and
    bias shapes, and float weights and bias that round to the quantized ones
    (:func:`_rounds_to`; any other tensor of that shape is off by far more than half a step).
    Operator order is not relied on. Returns ``(position, quantized op, float op)``; raises,
    naming the operator, when one has no such twin or several that differ."""
    floats = [(op, _weight_signature(fb_f, op)) for op in fb_f.operators if fb_f.op_name(op) in WEIGHT_OPS]
    used: set[int] = set()
    pairs = []
    for position, op in enumerate(fb_q.operators):
        if fb_q.op_name(op) not in WEIGHT_OPS:
            continue
        signature = _weight_signature(fb_q, op)
        where = (f"operator {position} ({signature[0]}, weights {list(signature[1])}"
                 f"{'' if signature[2] is None else f', bias {list(signature[2])}'}) of the int16x8 step model")
        _, w, b = _weight_operands(op)
        if fb_q.type_name(fb_q.tensors[w]) != "INT8":
            raise TinylocError(f"per-tensor weights: {where} has {fb_q.type_name(fb_q.tensors[w])} weights, not INT8")
        same = [k for k, (_, s) in enumerate(floats) if s == signature and k not in used]
        twins = []
        for k in same:
            _, fw, fbias = _weight_operands(floats[k][0])
            if _rounds_to(fb_q, w, fb_f, fw) and (b < 0 or _rounds_to(fb_q, b, fb_f, fbias)):
                twins.append(k)
        if not twins:
            raise TinylocError(f"per-tensor weights: {where} has no float twin ({len(same)} unused float "
                               "operator(s) of that kind and shape, none whose weights round to its own)")
        first = _weight_operands(floats[twins[0]][0])[1:]
        for k in twins[1:]:  # several twins are harmless only when their float values are the same
            other = _weight_operands(floats[k][0])[1:]
            if any(a >= 0 and not np.array_equal(fb_f.tensor_data(fb_f.tensors[a]), fb_f.tensor_data(fb_f.tensors[c]))
                   for a, c in zip(first, other)):
                raise TinylocError(f"per-tensor weights: {where} matches {len(twins)} different float "
                                   "operators; cannot tell which one it is")
        used.add(twins[0])
        pairs.append((position, op, floats[twins[0]][0]))
    return pairs


def _store_values(model_object, tensor, values: np.ndarray) -> None:
    """Put ``values`` in a buffer of ``tensor``'s own. The converter shares one buffer between
    equal constants; the old buffer, once nothing reads it, is dropped by ``pack_model``."""
    from tinyloc_tf.compression.flatbuffer import tflite_schema

    buffer = tflite_schema().BufferT()
    buffer.data = np.frombuffer(np.ascontiguousarray(values).tobytes(), dtype=np.uint8)
    model_object.buffers.append(buffer)
    tensor.buffer = len(model_object.buffers) - 1


def _own_input(tensors: list, op, slot: int) -> int:
    """Give ``op`` a copy of its input ``slot`` of its own (appended to ``tensors``): for a
    constant the converter shares with an operator that needs it with other values. Returns the
    copy's index."""
    tensors.append(copy.deepcopy(tensors[int(op.inputs[slot])]))
    inputs = np.array(op.inputs, dtype=np.int32)  # the unpacked vector is read-only
    inputs[slot] = len(tensors) - 1
    op.inputs = inputs
    return len(tensors) - 1


def per_tensor_symmetric(weights) -> tuple[np.ndarray, np.float32]:
    """TFLite's symmetric per-tensor int8 quantization of float ``weights``:
    ``S = max|w| / 127`` and ``q = clip(round(w / S), -127, 127)``, rounded once. Returns
    ``(q, S)``, ``S`` the float32 the file stores (and that ``q`` is rounded with)."""
    w = np.asarray(weights, dtype=np.float64)
    peak = float(np.max(np.abs(w))) if w.size else 0.0
    scale = np.float32(peak / 127.0) if peak > 0 else np.float32(1.0)
    return np.clip(np.round(w / np.float64(scale)), -127, 127).astype(np.int8), scale


def weights_per_tensor_from_float(quantized: bytes, float_model: bytes) -> tuple[bytes, int]:
    """The 16x8 step model ``quantized`` with one int8 scale per weight tensor, each quantized
    once from the float weights.

    TFLite's 16x8 quantizer cannot quantize the depthwise convolution per tensor ("Quantized
    dimension ... do not match"), so the step model is converted per channel, then every
    FULLY_CONNECTED / CONV_2D / DEPTHWISE_CONV_2D gets TFLite's per-tensor quantization of its
    float weights (:func:`per_tensor_symmetric`) and its bias, rounded once from the float bias,
    at scale ``input_scale * S`` (the float32 product, which TFLite's kernels check; the bias keeps
    its integer type, int64 in 16x8). Rescaling the per-channel int8 values instead would round
    every weight twice. ``float_model`` is
    the same step model converted in float32, whose tensors hold the exact float weights in the
    layout of the quantized file; operators are paired by :func:`_float_twins`. Activation scales
    (the calibration) are kept.

    Returns the flatbuffer and the number of weight tensors rewritten.
    """
    from tinyloc_tf.compression.flatbuffer import indices, pack_model, read_model, tensor_quantization, tflite_schema

    fb_q, fb_f = read_model(quantized, "the int16x8 step model"), read_model(float_model, "the float step model")
    pairs = _float_twins(fb_q, fb_f)
    model_object, schema, tensors = fb_q.model, tflite_schema(), fb_q.tensors
    written: dict[int, bytes] = {}  # tensor -> the values and scale it was given
    weights = set()
    rewritten = {id(op) for _, op, _ in pairs}
    # Tensors some other operator (or slot) also reads: those are never written over.
    foreign = {t for op in fb_q.operators for slot, t in enumerate(indices(op.inputs))
               if id(op) not in rewritten or slot == 0}

    def place(op, slot: int, values: np.ndarray, scale: np.float32) -> int:
        """Give input ``slot`` of ``op`` these values at this one scale; the tensor index.
        The converter shares identical constant tensors (the zero biases of an untrained
        model): one that another operator needs with other values, or reads elsewhere, is
        copied."""
        index = int(op.inputs[slot])
        key = values.dtype.str.encode() + values.tobytes() + scale.tobytes()
        if index in foreign or written.get(index, key) != key:
            index = _own_input(tensors, op, slot)
        if index in written:
            return index
        written[index] = key
        tensor = tensors[index]
        _store_values(model_object, tensor, values)
        q = schema.QuantizationParametersT()
        q.scale = np.array([scale], dtype=np.float32)
        q.zeroPoint = np.array([0], dtype=np.int64)
        q.quantizedDimension = 0
        tensor.quantization = q
        return index

    for position, op, twin in pairs:
        x, _, b = _weight_operands(op)
        _, fw, fbias = _weight_operands(twin)
        values, weight_scale = per_tensor_symmetric(fb_f.tensor_data(fb_f.tensors[fw]))
        weights.add(place(op, 1, values, weight_scale))
        if b < 0:
            continue
        where = f"operator {position} ({fb_q.op_name(op)}) of the int16x8 step model"
        input_scales, _, _ = tensor_quantization(tensors[x])
        if input_scales is None or len(input_scales) != 1:
            raise TinylocError(f"per-tensor weights: the input of {where} has no single scale")
        kind = fb_q.type_name(tensors[b])
        if kind not in ("INT32", "INT64"):
            raise TinylocError(f"per-tensor weights: {where} has a {kind} bias, expected INT64 or INT32")
        scale = np.float32(input_scales[0] * weight_scale)  # the float32 product, as TFLite's quantizer stores it
        values = np.round(fb_f.tensor_data(fb_f.tensors[fbias]).astype(np.float64) / np.float64(scale))
        dtype = np.int64 if kind == "INT64" else np.int32
        if np.any(np.abs(values) > np.iinfo(dtype).max):
            raise TinylocError(f"per-tensor weights: the bias of {where} overflows {kind}")
        place(op, 2, values.astype(dtype), scale)
    return pack_model(model_object), len(weights)


def _power_of_two_at_least(scale: float) -> np.float32:
    """The smallest power of two that is at least ``scale`` (> 0)."""
    return np.float32(2.0 ** np.ceil(np.log2(np.float64(scale))))


def power_of_two_scales(quantized: bytes) -> tuple[bytes, dict]:
    """The int16x8 step model ``quantized`` with every int16 scale rounded up to a power of two.

    int16 has 15 bits for a value where int8 weights give 7, so a scale up to twice as coarse
    costs under one bit and changes nothing the int8 weights do not swamp (the house Mamba
    H16L1: validation macro-F1 94.45 -> 94.39, argmax agreement with the float model 99.5 ->
    99.3 %). What it buys is flash: calibrated scales are all different, so every activation
    needs a quantization table of its own, while a handful of powers of two cover them all and
    :func:`~tinyloc_tf.compression.flatbuffer.pack_model` writes each table once (the same
    H16L1: 11,344 -> 10,656 B). A scale only grows, so no value that fitted saturates.

    Activations take the new scale as it is; int16 constants are rounded again to it from their
    values (never past +-32767, as the scale grew); the bias of every FULLY_CONNECTED / CONV_2D /
    DEPTHWISE_CONV_2D takes the scale ``input_scale * weight_scale`` (the float32 product TFLite's
    kernels check) and its values rounded again from the old ones (an int64 or int32 whose step is
    far below the weights'). int8 tensors (weights, an int8 graph) are left alone.

    A QUANTIZE whose input and output scales rounded to the same power is then an identity and
    is taken out (:func:`drop_identity_requantize`).

    Returns the flatbuffer and what was done: ``power_of_two_scales`` (int16 tensors whose scale
    changed) and ``identity_requantize_dropped``.
    """
    from tinyloc_tf.compression.flatbuffer import pack_model, read_model, tensor_quantization

    fb = read_model(quantized, "the int16x8 step model")
    model_object, tensors = fb.model, fb.tensors

    def rewrite(index: int, values: np.ndarray, scales: np.ndarray) -> None:
        _store_values(model_object, tensors[index], values)
        tensors[index].quantization.scale = np.asarray(scales, dtype=np.float32)

    changed = 0
    for index, tensor in enumerate(tensors):
        scales, zero_points, _ = tensor_quantization(tensor)
        if fb.type_name(tensor) != "INT16" or scales is None or len(scales) != 1 or zero_points[0] != 0 \
                or not scales[0] > 0:
            continue
        new = _power_of_two_at_least(scales[0])
        if new == scales[0]:
            continue
        changed += 1
        values = fb.tensor_data(tensor)
        if values is None:
            tensor.quantization.scale = np.array([new], dtype=np.float32)
        else:
            ratio = np.float64(scales[0]) / np.float64(new)
            rewrite(index, np.round(values.astype(np.float64) * ratio).astype(np.int16), np.array([new]))

    given: dict[int, np.ndarray] = {}  # bias tensor -> the scale it was given
    original: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # bias tensor -> (values, scale) as converted
    for position, op in enumerate(fb.operators):
        if fb.op_name(op) not in WEIGHT_OPS:
            continue
        x, w, b = _weight_operands(op)
        if b < 0:
            continue
        input_scales, _, _ = tensor_quantization(tensors[x])
        weight_scales, _, _ = tensor_quantization(tensors[w])
        new = (input_scales[0] * weight_scales).astype(np.float32)
        if b not in original:
            original[b] = (fb.tensor_data(tensors[b]), tensor_quantization(tensors[b])[0])
        values, old = original[b]
        if len(old) == 1 < len(new):
            # A per-channel bias stored with channel 0's scale (flatbuffer.per_tensor_bias_quantization):
            # every channel's scale moves by the same input-scale ratio, so channel 0's stands for all.
            new = new[:1]
        if b in given:
            if np.array_equal(given[b], new):
                continue
            # A bias the converter shares (the zero biases of an untrained model) that this
            # operator needs at another scale.
            b = _own_input(tensors, op, 2)
        given[b] = new
        if np.array_equal(old, new):
            continue
        rescaled = np.round(values.astype(np.float64) * (old.astype(np.float64) / new.astype(np.float64)))
        if np.any(np.abs(rescaled) > np.iinfo(values.dtype).max):
            raise TinylocError(f"power-of-two scales: the bias of operator {position} ({fb.op_name(op)}) "
                               f"overflows {fb.type_name(tensors[b])}")
        rewrite(b, rescaled.astype(values.dtype), new)
    # Two scales that rounded to the same power make the QUANTIZE between them an identity.
    dropped = drop_identity_requantize(model_object, fb.subgraph)
    return pack_model(model_object), {"power_of_two_scales": changed, "identity_requantize_dropped": dropped}


def convert_streaming(
    model,
    calibration=None,
    metadata: dict | None = None,
    *,
    quant: str = "int8",
    representative_size: int = DEFAULT_REPRESENTATIVE_STEPS,
    seed: int = 0,
    per_tensor_weights: bool = False,
    strip: bool = True,
    progress: bool = False,
):
    """Convert a trained Mamba tagger's step model to a ``.tflite``.

    Args:
        model: a trained Mamba ``SequenceTagger``.
        calibration: training streams, a list of float ``[n, F]`` (int8 only).
        metadata: extra metadata fields (e.g. :func:`~tinyloc_tf.compression.convert.data_metadata`).
        quant: ``"int8"`` (full integer, int8 state), ``"int16x8"`` (int16 activations and
            state, int8 weights) or ``"float32"``.
        per_tensor_weights: one int8 scale per weight tensor: TFLite's own per-tensor
            quantization for int8 (:func:`~tinyloc_tf.compression.convert.weights_per_tensor`);
            for int16x8, which TFLite's 16x8 quantizer refuses, the per-channel file with its
            weights quantized again from the float step model's (:func:`weights_per_tensor_from_float`).

    Returns:
        :class:`~tinyloc_tf.compression.convert.Conversion`; the metadata has a ``streaming``
        entry: input / output roles and shapes, state bytes, the window length it came from.
    """
    import tensorflow as tf

    from tinyloc_tf.compression.convert import (Conversion, _run_converter, file_report, finalize, model_metadata,
                                                weights_per_tensor)
    from tinyloc_tf.models.mamba_step import build_step_model

    if quant not in STREAMING_QUANT_MODES:
        raise TinylocError(f"streaming conversion supports {', '.join(STREAMING_QUANT_MODES)}, not {quant!r}")
    if per_tensor_weights and (refusal := per_tensor_weights_refusal(quant)):
        raise TinylocError(refusal)
    # One L2_NORMALIZATION per RMSNorm where TFLite can quantize it (int8 only): four
    # operators and five tensors fewer per block; int16x8 leaves out the epsilon's ADD.
    step = build_step_model(model, norm={"int8": "l2", "int16x8": "no_epsilon"}.get(quant, "layer"))
    input_names = [t.name for t in step.inputs]
    report: dict = {"quant": quant, "streaming": True}

    converter = tf.lite.TFLiteConverter.from_keras_model(step)
    if quant in ("int8", "int16x8"):
        if calibration is None:
            raise TinylocError(f"{quant} streaming conversion needs training streams [n, F] for calibration")
        steps = calibration_steps(step, calibration, representative_size, seed, progress=progress)
        report["representative"] = {"steps": int(len(steps[0])), "seed": int(seed)}  # of training streams
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        # TFLite's 16x8 quantizer fails per tensor on the depthwise convolution: int16x8 is
        # converted per channel, and its weights are quantized per tensor afterwards.
        weights_per_tensor(converter, per_tensor_weights and quant == "int8")
        if per_tensor_weights:
            report["weights"] = "per-tensor"
        converter.representative_dataset = lambda: (
            {name: values[i : i + 1] for name, values in zip(input_names, steps)} for i in range(len(steps[0]))
        )
        if quant == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
        else:
            # int16 activations (the state among them), int8 weights: TFLite's 16x8 mode.
            converter.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int16
    raw = _run_converter(converter.convert, quant, step)
    raw, done = canonicalise(raw, input_names, len(step.outputs))
    report.update(done)
    if per_tensor_weights and quant == "int16x8":
        # After canonicalise: each bias takes the scale of its input as the file has it.
        float_raw = _run_converter(tf.lite.TFLiteConverter.from_keras_model(step).convert, "float32", step)
        raw, report["requantized_weight_tensors"] = weights_per_tensor_from_float(raw, float_raw)
    if quant == "int16x8":
        raw, done = power_of_two_scales(raw)
        report["power_of_two_scales"] = done["power_of_two_scales"]
        report["identity_requantize_dropped"] += done["identity_requantize_dropped"]

    # The graph itself says how many states there are and their shapes: the file records only
    # that it is a step model, and of which window length (streaming_layout derives the rest).
    marker = {"window_T": (getattr(model, "build_config", None) or {}).get("steps")}
    payload = {**model_metadata(model), **(metadata or {}), "quant": quant, "streaming": marker}
    for key in ("representative", "weights"):
        if key in report:
            payload[key] = report[key]
    buf = finalize(raw, payload, strip=strip)
    report.update(bytes_with_names=len(raw), **file_report(buf), state_bytes=streaming_layout(buf)["state_bytes"])
    report["operators"] = sum(report["ops"].values())
    return Conversion(buf, report)
