"""Arena plans: where each activation tensor lives, for TFLM (carried in the ``.tflite``) and
for the AOT compiler.

::

    plan = tflm_memory_plan(buf)       # TFLMPlan(offsets per tensor, planned bytes, in-place pairs)
    own = tflm_default_plan_bytes(buf) # what TFLM plans by itself for the same model
    entry = plan_entry(plan)           # the "OfflineMemoryAllocation" metadata bytes

Without a plan in the model, TFLM gives every activation tensor a buffer of its own and packs
them with its greedy planner (largest first). Its documented offline format (a metadata entry
``OfflineMemoryAllocation`` holding int32 ``[0, subgraph 0, tensor count, one arena offset or
-1 per tensor]``, ``tensorflow/lite/micro/docs/memory_management.md``) lets the model say where
each tensor goes. :func:`tflm_memory_plan` differs from TFLM's own plan in one way: an output
may take over the bytes of an input that dies at its operator, where each of that operator's
TFLM kernels (reference and CMSIS-NN) reads the input elements at an index before it writes the
output element there (:data:`IN_PLACE_OPS`, same shape, no broadcast of that input), and a
RESHAPE's output shares its input's bytes (TFLM's reshape kernel skips its copy then). A graph
output may be written over a dead input of its operator; a graph input is overwritten only where
the caller says it may be (a step model's state inputs: the caller writes the next state into
them before every call, as the host runner and the firmware do), so what a caller wrote stays.

Lifetimes follow TFLM's (``micro_allocation_info.cc``): graph inputs exist from before the
first operator, graph outputs until after the last, every other tensor from the operator that
writes it to the last that reads it. :func:`tflm_default_plan_bytes` replays TFLM's greedy
planner (its tie order included; checked against TFLM's own arena on the shipped models), so a
conversion keeps the offline plan only where it is smaller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: TFLM's metadata entry for an offline plan.
OFFLINE_PLAN_NAME = "OfflineMemoryAllocation"
#: Operators whose TFLM kernels compute each output element from the input elements at the
#: same index, read before the output element is written: an input of the output's shape may
#: share the output's bytes.
IN_PLACE_OPS = ("ADD", "SUB", "MUL", "LOGISTIC", "TANH", "RELU", "QUANTIZE")
#: Operators whose output is the input's bytes under another shape.
SHARED_OPS = ("RESHAPE",)
#: TFLM's arena buffer alignment.
ALIGNMENT = 16


@dataclass
class Buffer:
    """A region of an arena: ``size`` bytes live from step ``first`` to ``last``."""

    id: int
    size: int
    first: int
    last: int
    offset: int = 0
    tensors: list[int] = field(default_factory=list)


def _align(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def greedy_plan(buffers: list[Buffer], alignment: int = ALIGNMENT, order=None) -> int:
    """Assign ``offset`` to every buffer (largest first, each at the lowest offset no buffer alive
    at the same time occupies); return the arena size needed. ``order``: the buffers in the
    order to place them (default: by size, then first use, then id)."""
    placed: list[Buffer] = []
    for b in order if order is not None else sorted(buffers, key=lambda b: (-b.size, b.first, b.id)):
        alive = sorted((p for p in placed if p.first <= b.last and b.first <= p.last), key=lambda p: p.offset)
        offset = 0
        for p in alive:
            if offset + b.size <= p.offset:
                break  # fits in the gap below p
            offset = max(offset, _align(p.offset + p.size, alignment))
        b.offset = offset
        placed.append(b)
    return max((b.offset + b.size for b in buffers), default=0)


@dataclass
class TFLMPlan:
    offsets: list[int]  # per tensor: byte offset in the arena's planned part, -1 for constants
    planned_bytes: int  # bytes of the planned part (before TFLM's scratch buffers)
    in_place: list[tuple[int, int]]  # (output, input) tensor pairs sharing bytes


def _lifetimes(fb) -> tuple[dict[int, Buffer], dict[int, int], list[bool]]:
    """One buffer per activation tensor with TFLM's lifetimes; also each tensor's last reader."""
    from tinyloc_tf.compression.flatbuffer import indices, tensor_nbytes

    constant = [fb.tensor_data(t) is not None for t in fb.tensors]
    buffers: dict[int, Buffer] = {}

    def place(t: int, scope: int) -> None:
        if not constant[t] and t not in buffers:
            buffers[t] = Buffer(id=t, size=_align(tensor_nbytes(fb.tensors[t]), ALIGNMENT), first=scope,
                                last=scope, tensors=[t])

    for t in fb.inputs:
        place(t, 0)
    last_read: dict[int, int] = {}
    for scope, op in enumerate(fb.operators, start=1):
        for t in indices(op.outputs):
            place(t, scope)
        for t in indices(op.inputs):
            if t >= 0 and not constant[t]:
                last_read[t] = scope
    for t, b in buffers.items():
        b.last = max(b.last, last_read.get(t, b.first))
    for t in fb.outputs:
        if t in buffers:
            buffers[t].last = len(fb.operators) + 1
    return buffers, last_read, constant


def tflm_default_plan_bytes(model) -> int:
    """The planned bytes TFLM's own greedy planner gives ``model`` (without an offline plan):
    largest first, equal sizes in reverse tensor order (it fills its sort list from the end)."""
    from tinyloc_tf.compression.flatbuffer import read_model

    buffers, _, _ = _lifetimes(read_model(model))
    order = sorted(reversed(list(buffers.values())), key=lambda b: -b.size)  # stable: ties stay reversed
    return greedy_plan(list(buffers.values()), ALIGNMENT, order=order)


def tflm_memory_plan(model, overwritable_inputs=()) -> TFLMPlan | None:
    """Arena offsets for every activation tensor, with in-place outputs; None for a model of
    several subgraphs (TFLM plans those itself). ``overwritable_inputs``: positions of graph
    inputs whose bytes the model may overwrite once it has read them."""
    from tinyloc_tf.compression.flatbuffer import indices, read_model, tensor_nbytes

    fb = read_model(model)
    if len(fb.model.subgraphs or []) != 1:
        return None
    buffers, last_read, constant = _lifetimes(fb)
    home = {t: t for t in buffers}  # the buffer each tensor lives in
    kept = (set(fb.inputs) - {fb.inputs[i] for i in overwritable_inputs}) | set(fb.outputs)
    in_place = []
    for scope, op in enumerate(fb.operators, start=1):
        name, outputs = fb.op_name(op), indices(op.outputs)
        if len(outputs) != 1 or name not in IN_PLACE_OPS + SHARED_OPS:
            continue
        out = outputs[0]
        reads = [t for t in indices(op.inputs) if t >= 0 and not constant[t]]
        for source in reads[:1] if name in SHARED_OPS else reads:
            shared = buffers[home[source]]
            if (source in kept or tensor_nbytes(fb.tensors[source]) != tensor_nbytes(fb.tensors[out])
                    or any(last_read.get(t, 0) > scope for t in shared.tensors)):
                continue  # the caller's bytes, another size (int8 -> int16), or still read later
            if name not in SHARED_OPS and list(indices(fb.tensors[source].shape)) != list(indices(fb.tensors[out].shape)):
                continue  # a broadcast input: its elements are read at other indices
            shared.last = max(shared.last, buffers[out].last)
            shared.tensors.append(out)
            del buffers[out]
            home[out] = shared.id
            in_place.append((out, source))
            break
    planned = greedy_plan(list(buffers.values()), ALIGNMENT)
    offsets = [buffers[home[t]].offset if t in home else -1 for t in range(len(fb.tensors))]
    return TFLMPlan(offsets=offsets, planned_bytes=planned, in_place=in_place)


def plan_entry(plan: TFLMPlan) -> bytes:
    """The ``OfflineMemoryAllocation`` bytes: int32 ``[version 0, subgraph 0, count, offsets...]``."""
    return np.asarray([0, 0, len(plan.offsets), *plan.offsets], dtype="<i4").tobytes()
