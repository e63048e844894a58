"""An arena plan for TFLM, carried in the model the firmware embeds.

::

    planned = with_memory_plan(buf, overwritable_inputs=(1, 2))   # buf + TFLM's OfflineMemoryAllocation
    plan = tflm_memory_plan(buf)        # TFLMPlan(offsets per tensor, planned bytes, in-place pairs)

Without a plan TFLM gives every activation tensor a buffer of its own and packs them with its
greedy planner, which keeps about 40 bytes per buffer while it plans, in the arena's temporary
part: for a small model that bookkeeping, not the activations, sets the smallest arena TFLM
allocates in. TFLM's documented offline format (a metadata entry ``OfflineMemoryAllocation``
holding int32 ``[0, subgraph 0, tensor count, one arena offset or -1 per tensor]``,
``tensorflow/lite/micro/docs/memory_management.md``) lets the model say where each tensor goes;
the firmware then plans with ``tflm_app/src/offline_planner.cc`` (one int per buffer).

The plan differs from TFLM's own in one way: an output may take over the bytes of an input that
dies at its operator, where each of that operator's TFLM kernels (reference and CMSIS-NN) reads
the input elements at an index before it writes the output element there
(:data:`IN_PLACE_OPS`, same shape, no broadcast of that input), and a RESHAPE's output shares
its input's bytes (TFLM's reshape kernel skips its copy then). A graph output may be written
over a dead input of its operator; a graph input is overwritten only where the caller says it
may be (a step model's state inputs: the firmware writes the next state into them before every
call), so what a caller wrote stays. Buffers are packed as the AOT compiler packs its own
(:func:`~tinyloc_tf.deployment.aot.planner.greedy_plan`).

Lifetimes follow TFLM's (``micro_allocation_info.cc``): graph inputs exist from before the
first operator, graph outputs until after the last, every other tensor from the operator that
writes it to the last that reads it. :func:`tflm_default_plan_bytes` replays TFLM's greedy
planner (its tie order included; checked against TFLM's arena in ``tests/test_tflm_plan.py``),
and :func:`with_memory_plan` adds a plan only where its planned part is no larger.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyloc_tf.deployment.aot.planner import Buffer, greedy_plan

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


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


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
            buffers[t] = Buffer(id=t, size=_align(tensor_nbytes(fb.tensors[t])), first=scope,
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

    return _default_plan_bytes(read_model(model))


def _default_plan_bytes(fb) -> int:
    buffers, _, _ = _lifetimes(fb)
    order = sorted(reversed(list(buffers.values())), key=lambda b: -b.size)  # stable: ties stay reversed
    return greedy_plan(list(buffers.values()), ALIGNMENT, order=order)


def tflm_memory_plan(model, overwritable_inputs=()) -> TFLMPlan | None:
    """Arena offsets for every activation tensor, with in-place outputs; None for a model of
    several subgraphs (TFLM plans those itself). ``overwritable_inputs``: positions of graph
    inputs whose bytes the model may overwrite once it has read them."""
    from tinyloc_tf.compression.flatbuffer import read_model

    return _memory_plan(read_model(model), overwritable_inputs)


def _memory_plan(fb, overwritable_inputs=()) -> TFLMPlan | None:
    from tinyloc_tf.compression.flatbuffer import indices, tensor_nbytes

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


def with_memory_plan(model, overwritable_inputs=()) -> bytes:
    """``model`` with its plan as an ``OfflineMemoryAllocation`` entry (replacing one it carries),
    or ``model`` unchanged where the plan would not be smaller than TFLM's own."""
    from tinyloc_tf.compression.flatbuffer import pack_model, read_model
    from tinyloc_tf.compression.metadata import set_metadata_entry

    fb = read_model(model)  # parsed once: both plans and the rewrite use its tree
    plan = _memory_plan(fb, overwritable_inputs)
    if plan is None or plan.planned_bytes > _default_plan_bytes(fb):
        return fb.buf
    set_metadata_entry(fb.model, OFFLINE_PLAN_NAME, plan_entry(plan))
    return pack_model(fb.model)
