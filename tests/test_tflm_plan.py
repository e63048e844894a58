"""The arena plan the TFLM firmware follows (deployment/tflm_plan.py)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from tinyloc_tf.compression.flatbuffer import indices, read_model, tensor_nbytes
from tinyloc_tf.compression.metadata import metadata_entries
from tinyloc_tf.deployment.tflm_plan import (OFFLINE_PLAN_NAME, tflm_default_plan_bytes, tflm_memory_plan,
                                             with_memory_plan)

from helpers import OpModel

MODELS = sorted((Path(__file__).resolve().parents[1] / "models").glob("*/*.tflite"))


def tflm_head_bytes(buf: bytes, capfd) -> int:
    """The planned ("head") bytes of TFLM's own arena for ``buf`` (its allocation log)."""
    from tflite_micro.python.tflite_micro import runtime

    import ctypes

    capfd.readouterr()
    runtime.Interpreter.from_bytes(buf, arena_size=400_000).print_allocations()
    ctypes.CDLL(None).fflush(None)  # the log is C stdio, buffered
    captured = capfd.readouterr()
    log = captured.out + captured.err
    return int(re.search(r"Arena allocation head (\d+) bytes", log).group(1))


def run_tflm(buf: bytes, inputs: list[np.ndarray]) -> list[np.ndarray]:
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(buf, arena_size=400_000)
    for i, x in enumerate(inputs):
        interpreter.set_input(x, i)
    interpreter.invoke()
    fb = read_model(buf)
    return [np.array(interpreter.get_output(i)) for i in range(len(fb.outputs))]


def random_inputs(buf: bytes, rng) -> list[np.ndarray]:
    fb = read_model(buf)
    out = []
    for t in fb.inputs:
        dtype = np.dtype(fb.type_name(fb.tensors[t]).lower())
        info = np.iinfo(dtype)
        out.append(rng.integers(info.min, info.max, size=indices(fb.tensors[t].shape), dtype=dtype))
    return out


def overlaps(plan, fb, pairs) -> list[tuple[int, int]]:
    """Tensors placed on shared bytes while both alive, other than the plan's in-place pairs."""
    n = len(fb.operators)
    first, last = {}, {}
    for t in fb.inputs:
        first[t] = 0
    for scope, op in enumerate(fb.operators, start=1):
        for t in indices(op.outputs):
            first.setdefault(t, scope)
        for t in indices(op.inputs):
            if t >= 0:
                last[t] = scope
    for t in fb.outputs:
        last[t] = n + 1
    placed = [t for t, off in enumerate(plan.offsets) if off >= 0]
    bad = []
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            alive = first[a] <= last.get(b, first[b]) and first[b] <= last.get(a, first[a])
            lo_a, lo_b = plan.offsets[a], plan.offsets[b]
            shared = lo_a < lo_b + tensor_nbytes(fb.tensors[b]) and lo_b < lo_a + tensor_nbytes(fb.tensors[a])
            if alive and shared and (a, b) not in pairs and (b, a) not in pairs:
                bad.append((a, b))
    return bad


@pytest.mark.parametrize("path", MODELS, ids=[f"{p.parent.name}/{p.stem}" for p in MODELS])
def test_default_plan_replays_tflm_and_the_offline_plan_changes_no_output(path, capfd):
    buf = path.read_bytes()
    # The replay of TFLM's greedy planner gives TFLM's own planned bytes.
    assert tflm_default_plan_bytes(buf) == tflm_head_bytes(buf, capfd)
    planned = with_memory_plan(buf)
    plan = tflm_memory_plan(buf)
    if planned == buf:  # no smaller than TFLM's own: the model is left as it is
        assert plan.planned_bytes > tflm_default_plan_bytes(buf)
        return
    assert OFFLINE_PLAN_NAME in metadata_entries(planned)
    assert len(planned) - len(buf) <= 4 * len(plan.offsets) + 96  # one int32 per tensor, the entry
    # TFLM honours the plan: its head is the plan's size, and every output is the same.
    assert tflm_head_bytes(planned, capfd) == plan.planned_bytes <= tflm_default_plan_bytes(buf)
    fb = read_model(buf)
    assert overlaps(plan, fb, set(plan.in_place)) == []
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = random_inputs(buf, rng)
        for a, b in zip(run_tflm(buf, x), run_tflm(planned, x)):
            np.testing.assert_array_equal(a, b)


def _chain(in_dtype="int8", out_dtype="int8", broadcast=False):
    """x -> LOGISTIC -> a -> MUL(a, b) -> y, b a second input (broadcast along the first axis)."""
    m = OpModel()
    shape = [4, 8]
    x = m.tensor(shape, in_dtype, scale=np.float32(0.05), zero_point=0)
    b = m.tensor([1, 8] if broadcast else shape, in_dtype, scale=np.float32(0.05), zero_point=0)
    a = m.tensor(shape, in_dtype, scale=np.float32(1 / 256), zero_point=-128 if in_dtype == "int8" else 0)
    y = m.tensor(shape, out_dtype, scale=np.float32(0.01), zero_point=0)
    m.op("LOGISTIC", [x], [a])
    m.op("MUL", [a, b], [y])
    return m.build([x, b], [y])


def test_in_place_only_where_tflm_reads_before_it_writes():
    # LOGISTIC's output a is a fresh buffer (its input x is the caller's); y is written over a.
    buf = _chain()
    fb = read_model(buf)
    x, b = fb.inputs
    (y,) = fb.outputs
    plan = tflm_memory_plan(buf)
    assert [pair[0] for pair in plan.in_place] == [y]
    assert plan.offsets[y] == plan.offsets[plan.in_place[0][1]]
    assert plan.offsets[x] not in (plan.offsets[y],)
    # An input the caller lets the model overwrite takes LOGISTIC's output in place.
    plan = tflm_memory_plan(buf, overwritable_inputs=[0])
    assert {pair[1] for pair in plan.in_place} >= {x}
    # A broadcast input is never the one written over (its elements are read at other indices).
    plan = tflm_memory_plan(_chain(broadcast=True), overwritable_inputs=[1])
    assert all(source != read_model(_chain(broadcast=True)).inputs[1] for _, source in plan.in_place)


def test_no_in_place_across_element_sizes():
    # QUANTIZE int8 -> int16 writes two bytes per element read: never in place.
    m = OpModel()
    x = m.tensor([16], "int8", scale=np.float32(0.1), zero_point=0)
    a = m.tensor([16], "int8", scale=np.float32(1 / 256), zero_point=-128)
    y = m.tensor([16], "int16", scale=np.float32(0.001), zero_point=0)
    m.op("LOGISTIC", [x], [a])
    m.op("QUANTIZE", [a], [y])
    assert tflm_memory_plan(m.build([x], [y])).in_place == []
