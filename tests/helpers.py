"""Plain helper functions shared by several test modules (fixtures live in conftest.py).

Test modules import these as ``from helpers import ...``: there is no ``tests/__init__.py``,
so pytest's default ``prepend`` import mode puts ``tests/`` on ``sys.path`` both for
``pytest tests/`` and for a single file run.

Heavy or optional libraries (TensorFlow, Keras, the tflite-micro wheel) are imported inside
the functions that need them, so importing this module costs nothing and never skips a test.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------- toy windows


def learnable_windows(n, steps, features, classes, seed):
    """Windows whose label at each step is the strongest of the first `classes` features."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, steps, features)).astype("float32") * 0.5
    y = rng.integers(0, classes, (n, steps)).astype("int32")
    np.put_along_axis(x, y[..., None], 0.5 + 0.5 * rng.random((n, steps, 1)).astype("float32"), axis=2)
    return x, y


# --------------------------------------------------------------------------- toy prepared data


def write_toy_dataset(out, *, steps=5, features=6, classes=3, sizes=(96, 32, 32), seed=0):
    """A learnable prepared dataset: each room has its own RSSI signature plus noise; a
    window starts in one room and may move to another part-way (so paths have transitions)."""
    from tinyloc_tf.data import Split, write_prepared

    rng = np.random.default_rng(seed)
    signatures = rng.uniform(0.1, 0.9, size=(classes, features))
    splits = {}
    for name, count in zip(("train", "val", "test"), sizes):
        y = np.repeat(rng.integers(classes, size=(count, 1)), steps, axis=1)
        moves = rng.integers(1, steps + 1, size=count)  # steps == no move
        for row, (cut, room) in enumerate(zip(moves, rng.integers(classes, size=count))):
            y[row, cut:] = room
        X = signatures[y] + rng.normal(0.0, 0.08, size=(count, steps, features))
        splits[name] = Split(np.clip(X, 0, 1).astype(np.float32), y.astype(np.int32))
    meta = {
        "features": [f"ap{i}" for i in range(features)],
        "classes": [f"room{k}" for k in range(classes)],
        "T": steps,
        "scaling": {"min": [-120.0] * features, "max": [0.0] * features},
        "labels": "room",
        "source": "toy",
        "source_sha256": "0" * 64,
    }
    return write_prepared(out, splits, meta)


# --------------------------------------------------------------------------- small UJIIndoorLoc tables

# Two floors of one building, 8 reference points each on a 4 x 2 grid (10 m apart), 4 scans
# per point. AP k is heard on floor k // 4 only; APs 8.. are never heard in training.


def _frame(rows: list[dict]) -> pd.DataFrame:
    from tinyloc_tf.data.uji import COLUMNS

    full = [{column: row.get(column, 100) for column in COLUMNS} for row in rows]
    return pd.DataFrame(full, columns=list(COLUMNS))


def _scan(building, floor, x, y, rssi: dict[int, int], user=1) -> dict:
    row = {f"WAP{k + 1:03d}": value for k, value in rssi.items()}
    row.update(LONGITUDE=-7600.0 + x, LATITUDE=4864800.0 + y, FLOOR=floor, BUILDINGID=building,
               SPACEID=100 + floor, RELATIVEPOSITION=1, USERID=user, PHONEID=13, TIMESTAMP=1371713733)
    return row


def small_tables(rng_seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """UJIIndoorLoc-shaped (training, validation) tables, small enough to write per test."""
    rng = np.random.default_rng(rng_seed)
    train, test = [], []
    for floor in (0, 1):
        for gx in range(4):
            for gy in range(2):
                for repeat in range(4):
                    rssi = {4 * floor + ap: int(rng.integers(-95, -40)) for ap in range(4)}
                    train.append(_scan(0, floor, 10.0 * gx, 10.0 * gy, rssi, user=repeat))
        for gx in range(4):
            rssi = {4 * floor + ap: int(rng.integers(-95, -40)) for ap in range(4)}
            test.append(_scan(0, floor, 10.0 * gx + 1.0, 4.0, rssi))
    test[0]["WAP001"] = -20  # stronger than anything in training: clipped to 1
    test[1]["WAP010"] = -52  # an access point never heard in training
    return _frame(train), _frame(test)


def write_folder(folder: Path, train: pd.DataFrame, test: pd.DataFrame, nested: bool = False) -> Path:
    """The two tables as the archive's CSVs in ``folder`` (or its ``UJIndoorLoc/`` with ``nested``)."""
    from tinyloc_tf.data.uji import TEST_CSV, TRAIN_CSV

    target = folder / "UJIndoorLoc" if nested else folder
    target.mkdir(parents=True, exist_ok=True)
    train.to_csv(target / TRAIN_CSV, index=False)
    test.to_csv(target / TEST_CSV, index=False)
    return folder


def write_zip(path: Path, train: pd.DataFrame, test: pd.DataFrame) -> Path:
    """The two tables as the archive's CSVs in a zip like the published one."""
    from tinyloc_tf.data.uji import TEST_CSV, TRAIN_CSV

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"UJIndoorLoc/{TRAIN_CSV}", train.to_csv(index=False))
        archive.writestr(f"UJIndoorLoc/{TEST_CSV}", test.to_csv(index=False))
    return path


# --------------------------------------------------------------------------- tiny trained runs


def tiny_run_folder(tmp_path_factory, dataset, family):
    """A run folder (model.keras + config.json) holding a tiny int8-friendly model of ``family``
    (hidden 4, one layer) fitted for two epochs on ``dataset`` (a loaded prepared dataset with
    5 features, 3 classes and T = 20, such as the ``stream_data`` fixture)."""
    import keras

    from tinyloc_tf.models import build_model

    keras.utils.set_random_seed(0)
    tagger = build_model(family, features=5, classes=3, hidden=4, layers=1, steps=20, int8_friendly=True)
    tagger.compile(optimizer=keras.optimizers.Adam(0.02))
    tagger.fit(dataset.train.X, dataset.train.y, batch_size=16, epochs=2, verbose=0)
    run = tmp_path_factory.mktemp("runs") / family
    run.mkdir()
    tagger.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"data_dir": str(dataset.path), "build_config": tagger.build_config}))
    return run


# --------------------------------------------------------------------------- single-op .tflite models

_TYPES = {"int8": 9, "int16": 7, "int32": 2, "int64": 4, "float32": 0}
_NP = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "int64": np.int64, "float32": np.float32}


def tflite_schema():
    """The TFLite flatbuffer schema (object API) shipped in the tflite-micro wheel. Modules
    that use it skip themselves first with ``pytest.importorskip`` when the wheel is absent."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated

    return schema_py_generated


class OpModel:
    """A tiny .tflite model written directly through the schema object API."""

    def __init__(self):
        S = tflite_schema()
        self.tensors = []
        self.buffers = [S.BufferT()]
        self.opcodes: list[int] = []
        self.ops = []

    def tensor(self, shape, dtype="int8", scale=None, zero_point=None, data=None, qdim=0):
        S = tflite_schema()
        t = S.TensorT()
        t.shape = [int(d) for d in shape]
        t.type = _TYPES[dtype]
        t.name = f"t{len(self.tensors)}".encode()
        if scale is not None:
            q = S.QuantizationParametersT()
            q.scale = [float(s) for s in np.atleast_1d(scale)]
            zp = np.zeros(len(q.scale), dtype=np.int64) if zero_point is None else np.atleast_1d(zero_point)
            q.zeroPoint = [int(z) for z in zp]
            q.quantizedDimension = int(qdim)
            t.quantization = q
        t.buffer = 0
        if data is not None:
            b = S.BufferT()
            b.data = np.ascontiguousarray(np.asarray(data, dtype=_NP[dtype])).view(np.uint8).reshape(-1).tolist()
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(self, name, inputs, outputs, options=None, options_type=None):
        S = tflite_schema()
        code = getattr(S.BuiltinOperator, name)
        if code not in self.opcodes:
            self.opcodes.append(code)
        o = S.OperatorT()
        o.opcodeIndex = self.opcodes.index(code)
        o.inputs = list(inputs)
        o.outputs = list(outputs)
        if options is not None:
            o.builtinOptionsType = getattr(S.BuiltinOptions, options_type)
            o.builtinOptions = options
        self.ops.append(o)

    def build(self, inputs, outputs) -> bytes:
        import flatbuffers

        S = tflite_schema()
        m = S.ModelT()
        m.version = 3
        codes = []
        for c in self.opcodes:
            oc = S.OperatorCodeT()
            oc.builtinCode = c
            oc.deprecatedBuiltinCode = min(c, 127)
            oc.version = 1
            codes.append(oc)
        m.operatorCodes = codes
        sg = S.SubGraphT()
        sg.tensors = self.tensors
        sg.operators = self.ops
        sg.inputs = list(inputs)
        sg.outputs = list(outputs)
        m.subgraphs = [sg]
        m.buffers = self.buffers
        b = flatbuffers.Builder(1024)
        b.Finish(m.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def options(cls_name, **fields):
    """A builtin-options object of the schema (``"MulOptionsT"``, ...) with ``fields`` set."""
    o = getattr(tflite_schema(), cls_name)()
    for k, v in fields.items():
        setattr(o, k, v)
    return o


def run_wheel(buf: bytes, x: np.ndarray) -> np.ndarray:
    """The output of the .tflite model ``buf`` on ``x`` in the tflite-micro wheel's interpreter, flat."""
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(buf, arena_size=256 * 1024)
    it.set_input(x, 0)
    it.invoke()
    return np.asarray(it.get_output(0)).reshape(-1)


# --------------------------------------------------------------------------- a hand-built int8 .tflite

FC_T, FC_F, FC_K = 4, 6, 3
CLASSES = ["kitchen", 'hall "main"', "bedroom"]


def fc_model_bytes(steps: int = FC_T, features: int = FC_F, classes: int = FC_K, seed: int = 0, version: int = 3,
                   metadata: bool = True) -> bytes:
    """An int8 .tflite: x int8 [1, T, F] -> FULLY_CONNECTED (keep dims) -> int8 [1, T, K].

    With ``metadata`` it carries tinyloc metadata (CRF, class names, scaling) like a model from
    ``tinyloc convert``.
    """
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as s

    rng = np.random.default_rng(seed)
    in_scale, in_zp = 1.0 / 255.0, -128
    w_scale = 0.02
    out_scale, out_zp = 0.05, 5

    def quant(scale, zp):
        q = s.QuantizationParametersT()
        q.scale, q.zeroPoint = [float(scale)], [int(zp)]
        return q

    def tensor(shape, ttype, buffer, q):
        t = s.TensorT()
        t.shape, t.type, t.buffer, t.quantization = list(shape), ttype, buffer, q
        return t

    def buffer(array=None):
        b = s.BufferT()
        if array is not None:
            b.data = np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype=np.uint8).copy()
        return b

    weights = rng.integers(-127, 128, size=(classes, features), dtype=np.int8)
    bias = rng.integers(-2000, 2000, size=(classes,)).astype(np.int32)
    model = s.ModelT()
    model.version = version
    model.buffers = [buffer(), buffer(), buffer(weights), buffer(bias), buffer()]
    sub = s.SubGraphT()
    sub.tensors = [
        tensor((1, steps, features), s.TensorType.INT8, 1, quant(in_scale, in_zp)),
        tensor((classes, features), s.TensorType.INT8, 2, quant(w_scale, 0)),
        tensor((classes,), s.TensorType.INT32, 3, quant(in_scale * w_scale, 0)),
        tensor((1, steps, classes), s.TensorType.INT8, 4, quant(out_scale, out_zp)),
    ]
    sub.inputs, sub.outputs = [0], [3]
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType = s.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = s.FullyConnectedOptionsT()
    op.builtinOptions.keepNumDims = True
    sub.operators = [op]
    model.subgraphs = [sub]
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.FULLY_CONNECTED
    code.version = 1
    model.operatorCodes = [code]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    buf = bytes(builder.Output())
    if not metadata:
        return buf
    from tinyloc_tf.compression.metadata import write_metadata

    return write_metadata(buf, {
        "classes": CLASSES[:classes] if classes <= len(CLASSES) else [f"c{i}" for i in range(classes)],
        "features": [f"ap{i}" for i in range(features)],
        "T": steps,
        "scaling": {"min": [-110.0] * features, "max": [-30.0] * features},
        "crf": crf_params(classes, seed),
        "quant": "int8",
    })


def crf_params(classes: int = FC_K, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed + 100)
    return {
        "transitions": rng.normal(size=(classes, classes)).round(3).tolist(),
        "start": rng.normal(size=classes).round(3).tolist(),
        "end": rng.normal(size=classes).round(3).tolist(),
    }
