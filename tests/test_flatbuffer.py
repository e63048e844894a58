"""compression/flatbuffer.py: the one reader (and writer) of .tflite flatbuffers."""

from __future__ import annotations

import numpy as np
import pytest

from tinyloc_tf.compression import flatbuffer as fbm
from tinyloc_tf.errors import TinylocError


def tiny_model() -> bytes:
    """x int8 [1, 3] -> ADD(x, constant int8 [3], per-channel zero points) -> custom op -> y.

    Built with the schema's object API (no converter), with one metadata entry.
    """
    import flatbuffers

    s = fbm.tflite_schema()
    model = s.ModelT()
    model.version = 3
    constant = np.array([1, -2, 3], dtype=np.int8)
    model.buffers = [s.BufferT() for _ in range(3)]
    model.buffers[1].data = constant.view(np.uint8).copy()
    model.buffers[2].data = np.frombuffer(b"hello", dtype=np.uint8).copy()

    def tensor(shape, buffer, scale=None, zero_points=None):
        t = s.TensorT()
        t.shape, t.type, t.buffer = shape, s.TensorType.INT8, buffer
        if scale is not None:
            t.quantization = s.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = scale, zero_points
        return t

    sub = s.SubGraphT()
    sub.tensors = [tensor([1, 3], 0, [0.5], [-1]), tensor([3], 1, [0.1, 0.2, 0.3]), tensor([1, 3], 0), tensor([1, 3], 0)]
    sub.inputs, sub.outputs = [0], [3]
    add, custom = s.OperatorT(), s.OperatorT()
    add.opcodeIndex, add.inputs, add.outputs = 0, [0, 1], [2]
    custom.opcodeIndex, custom.inputs, custom.outputs = 1, [2, -1], [3]
    sub.operators = [add, custom]
    model.subgraphs = [sub]
    codes = [s.OperatorCodeT(), s.OperatorCodeT()]
    codes[0].builtinCode = codes[0].deprecatedBuiltinCode = s.BuiltinOperator.ADD
    codes[1].builtinCode = codes[1].deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
    codes[1].customCode = "MyOp"
    model.operatorCodes = codes
    entry = s.MetadataT()
    entry.name, entry.buffer = "note", 2
    model.metadata = [entry]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=fbm.TFLITE_FILE_IDENTIFIER)
    return bytes(builder.Output())


def test_reads_ops_types_quantization_constants_and_metadata(tmp_path):
    path = tmp_path / "tiny.tflite"
    path.write_bytes(tiny_model())
    fb = fbm.read_model(path)
    assert fb.where == str(path) and fb.inputs == [0] and fb.outputs == [3]
    assert [fb.op_name(op) for op in fb.operators] == ["ADD", "CUSTOM:MyOp"] == fb.opcode_names()
    assert fbm.indices(fb.operators[1].inputs) == [2, -1]
    assert {fb.type_name(t) for t in fb.tensors} == {"INT8"}

    scales, zero_points, dim = fbm.tensor_quantization(fb.tensors[0])
    assert scales.dtype == np.float32 and scales.tolist() == [0.5] and zero_points.tolist() == [-1] and dim == 0
    scales, zero_points, _ = fbm.tensor_quantization(fb.tensors[1])
    assert len(scales) == 3 and zero_points.tolist() == [0, 0, 0]  # missing zero points read as 0
    assert fbm.tensor_quantization(fb.tensors[2]) == (None, None, 0)

    assert fb.tensor_data(fb.tensors[1]).tolist() == [1, -2, 3]
    assert fb.tensor_data(fb.tensors[0]) is None  # buffer 0: the empty sentinel
    assert fb.metadata() == {"note": b"hello"}
    # Bytes read the same; written back they still read the same.
    again = fbm.read_model(fbm.pack_model(fbm.read_model(path.read_bytes()).model))
    assert again.metadata() == {"note": b"hello"} and again.opcode_names() == fb.opcode_names()


def test_damaged_models_are_one_error_naming_the_file(tmp_path):
    buf = tiny_model()
    path = tmp_path / "cut.tflite"
    path.write_bytes(buf[: len(buf) // 2])
    with pytest.raises(TinylocError, match=r"cut\.tflite: truncated or corrupted"):
        fbm.read_model(path)
    with pytest.raises(TinylocError, match="junk: not a TFLite flatbuffer"):
        fbm.read_model(b"\x00" * 16, "junk")
    with pytest.raises(TinylocError, match=r"nope\.tflite: no such \.tflite file"):
        fbm.model_bytes(tmp_path / "nope.tflite")

    model = fbm.unpack_model(buf)
    model.subgraphs[0].operators[0].opcodeIndex = 7
    with pytest.raises(TinylocError, match="bad.tflite: .*missing opcode 7"):
        fbm.read_model(fbm.pack_model(model), "bad.tflite")


def test_packing_shares_repeated_arrays_and_strings_and_aligns_buffer_data():
    """pack_model stores an array or string that occurs twice once; the object tree read back
    is the one written, and every buffer's data starts on 16 bytes."""
    s = fbm.tflite_schema()
    model = fbm.unpack_model(tiny_model())
    graph = model.subgraphs[0]
    for tensor in graph.tensors:
        tensor.name = ""
    twin = fbm.add_tensor_like(model, graph, 1)  # same shape, scales and zero points as tensor 1
    plain = fbm.pack_model(model)

    import flatbuffers

    builder = flatbuffers.Builder(1024)  # the library's own packing, one vector per table
    builder.Finish(model.Pack(builder), file_identifier=fbm.TFLITE_FILE_IDENTIFIER)
    assert len(plain) < len(bytes(builder.Output()))

    back = fbm.read_model(plain)
    assert len(back.tensors) == twin + 1
    for i in (1, twin):
        scales, zero_points, _ = fbm.tensor_quantization(back.tensors[i])
        assert scales.tolist() == pytest.approx([0.1, 0.2, 0.3]) and zero_points.tolist() == [0, 0, 0]
        assert list(back.tensors[i].shape) == [3]
    assert back.tensor_data(back.tensors[1]).tolist() == [1, -2, 3] and back.metadata() == {"note": b"hello"}
    root = s.Model.GetRootAs(plain, 0)
    base = np.frombuffer(plain, np.uint8).ctypes.data
    starts = [root.Buffers(i).DataAsNumpy().ctypes.data - base
              for i in range(root.BuffersLength()) if root.Buffers(i).DataLength()]
    assert starts and all(start % fbm.BYTE_ARRAY_ALIGNMENT == 0 for start in starts)
    # Shared: the two tensors' quantization tables point at the same scale vector.
    q1, q2 = root.Subgraphs(0).Tensors(1).Quantization(), root.Subgraphs(0).Tensors(twin).Quantization()
    assert q1.ScaleAsNumpy().ctypes.data == q2.ScaleAsNumpy().ctypes.data


@pytest.mark.parametrize("name", ["synth-house-a/32kb", "ujiindoorloc/64kb", "ujiindoorloc-floors/32kb"])
def test_repacked_shipped_model_gives_identical_tflm_outputs(name):
    from pathlib import Path

    from tinyloc_tf.deployment.host import run_tflite

    buf = (Path(__file__).resolve().parents[1] / "models" / f"{name}.tflite").read_bytes()
    repacked = fbm.pack_model(fbm.unpack_model(buf))
    assert len(repacked) <= len(buf)  # files packed before has_rank was left out shrink
    shape = list(fbm.read_model(buf).tensors[fbm.read_model(buf).inputs[0]].shape)
    X = np.random.default_rng(0).uniform(0, 1, (4, *shape[1:])).astype(np.float32)
    np.testing.assert_array_equal(run_tflite(repacked, X), run_tflite(buf, X))
    np.testing.assert_array_equal(run_tflite(repacked, X, runtime="litert"), run_tflite(buf, X, runtime="litert"))


@pytest.mark.parametrize("name, converted_before", [("synth-house-a/64kb", True), ("synth-house-a/32kb", True),
                                                    ("ujiindoorloc/32kb", False), ("ujiindoorloc-floors/64kb", False)])
def test_compact_quantization_keeps_every_output(name, converted_before):
    """One scale per FULLY_CONNECTED bias: same outputs in TFLM and LiteRT. One scale per every
    bias and one zero point per weight: same outputs in TFLM, and LiteRT refuses the weights'
    (which is why only the firmware embeds that form). Files converted before ``convert`` kept one
    bias scale have scales to drop; those converted since (the MLPs: fully connected only) have none."""
    from pathlib import Path

    from tinyloc_tf.deployment.host import run_tflite

    buf = (Path(__file__).resolve().parents[1] / "models" / f"{name}.tflite").read_bytes()
    fb = fbm.read_model(buf)
    X = np.random.default_rng(1).uniform(0, 1, (4, *list(fb.tensors[fb.inputs[0]].shape)[1:])).astype(np.float32)

    model = fbm.unpack_model(buf)
    fc_only = fbm.per_tensor_bias_quantization(model, operators=("FULLY_CONNECTED",))
    one_bias_scale = fbm.pack_model(model)
    assert len(one_bias_scale) < len(fbm.pack_model(fbm.unpack_model(buf))) or fc_only == 0
    for runtime in ("tflm", "litert"):
        np.testing.assert_array_equal(run_tflite(one_bias_scale, X, runtime=runtime), run_tflite(buf, X, runtime=runtime))

    every = fbm.per_tensor_bias_quantization(model)
    assert (fc_only + every > 0) == converted_before
    compact = fbm.read_model(fbm.pack_model(model))
    for tensor in compact.tensors:
        if compact.type_name(tensor) in ("INT32", "INT64"):  # the biases
            scales, _, _ = fbm.tensor_quantization(tensor)
            assert scales is None or len(scales) == 1
    assert fbm.single_weight_zero_points(model) > 0
    one_zero_point = fbm.pack_model(model)
    assert len(one_zero_point) < len(one_bias_scale)
    np.testing.assert_array_equal(run_tflite(one_zero_point, X), run_tflite(buf, X))
    with pytest.raises(Exception, match="zero_point"):
        run_tflite(one_zero_point, X, runtime="litert")
    assert fbm.single_weight_zero_points(model) == 0  # nothing left to shorten


def test_packing_keeps_has_rank_only_where_no_shape_says_the_rank():
    """A tensor with a shape needs no has_rank (its rank is the shape's length); a scalar keeps it,
    or readers would take its rank as unknown."""
    model = fbm.unpack_model(tiny_model())
    graph = model.subgraphs[0]
    for tensor in graph.tensors:
        tensor.hasRank = True
    graph.tensors[2].shape = None  # a scalar
    root = fbm.tflite_schema().Model.GetRootAs(fbm.pack_model(model), 0)
    ranks = [root.Subgraphs(0).Tensors(i).HasRank() for i in range(root.Subgraphs(0).TensorsLength())]
    assert ranks == [False, False, True, False]
    assert all(t.hasRank for t in graph.tensors)  # the caller's tree as it was


def test_packing_shares_equal_tables_and_points_data_less_tensors_at_buffer_zero():
    """Tables with the same fields (two tensors' equal quantization, empty buffers) are written
    once; tensors without data all use buffer 0 and the other empty buffers are dropped; what a
    runtime reads (graph_content) is unchanged, and the object given is not modified."""
    model = fbm.unpack_model(tiny_model())
    graph = model.subgraphs[0]
    graph.tensors[2].buffer = len(model.buffers)  # an activation with an empty buffer of its own
    model.buffers.append(fbm.tflite_schema().BufferT())
    twin = fbm.add_tensor_like(model, graph, 0)  # its quantization table equals tensor 0's
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=fbm.TFLITE_FILE_IDENTIFIER)
    plain = bytes(builder.Output())
    packed = fbm.pack_model(model)
    assert len(model.buffers) == 5 and graph.tensors[2].buffer == 3  # the caller's tree as it was

    back = fbm.read_model(packed)
    assert len(back.model.buffers) == 3  # sentinel, the constant, the metadata entry
    assert [t.buffer for t in back.tensors] == [0, 1, 0, 0, 0]
    assert fbm.graph_content(packed) == fbm.graph_content(plain)
    root = fbm.tflite_schema().Model.GetRootAs(packed, 0)
    tensors = root.Subgraphs(0)
    assert tensors.Tensors(0).Quantization()._tab.Pos == tensors.Tensors(twin).Quantization()._tab.Pos
    assert len(packed) < len(plain)


def test_graph_content_sees_a_changed_value():
    model = fbm.unpack_model(tiny_model())
    model.subgraphs[0].tensors[0].quantization.zeroPoint = [-2]
    assert fbm.graph_content(fbm.pack_model(model)) != fbm.graph_content(tiny_model())
