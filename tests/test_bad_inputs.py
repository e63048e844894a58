"""A corpus of bad inputs for every verb: data, models, arguments and outputs.

Each case builds its broken input beside a shared set of good ones (a prepared dataset, a
training run, an int8 ``.tflite``, UJIIndoorLoc CSVs) and runs the real command line
in-process. For every case: the exit status is the documented one (docs/errors.md), stderr
carries no traceback, the message names the file (or option) at fault, is one short line,
and no input file changed (contents, and no file added or removed next to them).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest

from helpers import small_tables, write_folder
from tinyloc_tf.cli import main
from tinyloc_tf.compression import convert as conv
from tinyloc_tf.data import Split, load_prepared, write_prepared
from tinyloc_tf.data.uji import TRAIN_CSV
from tinyloc_tf.models import build_model

STEPS, FEATURES, CLASSES = 4, 5, 3


def windows(count, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(CLASSES, size=(count, STEPS)).astype(np.int32)
    X = np.clip(0.2 + 0.2 * y[..., None] + rng.normal(0, 0.05, (count, STEPS, FEATURES)), 0, 1)
    return X.astype(np.float32), y


META = {
    "features": [f"ap{i}" for i in range(FEATURES)],
    "classes": [f"room{k}" for k in range(CLASSES)],
    "T": STEPS,
    "scaling": {"min": [-110.0] * FEATURES, "max": [-30.0] * FEATURES},
    "labels": "room",
    "source": "corpus windows",
    "source_sha256": "0" * 64,
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Good inputs: ``data`` (prepared), ``run`` (training run), ``tflite`` (int8), ``uji`` (CSVs),
    ``other_run`` (a run over 7 features), ``raw`` (a folder standing for raw in-home data)."""
    root = tmp_path_factory.mktemp("world")
    splits = {name: Split(*windows(n, seed)) for seed, (name, n) in enumerate((("train", 48), ("val", 16), ("test", 16)))}
    data = load_prepared(write_prepared(root / "data", splits, META))
    keras.utils.set_random_seed(0)
    tagger = build_model("mamba", features=FEATURES, classes=CLASSES, hidden=4, layers=1, steps=STEPS,
                         int8_friendly=True)
    tagger.compile(optimizer=keras.optimizers.Adam(0.02))
    tagger.fit(data.train.X, data.train.y, epochs=1, batch_size=16, verbose=0)
    run = root / "run"
    run.mkdir()
    tagger.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"data_dir": str(data.path), "build_config": tagger.build_config}))
    tflite = root / "m.tflite"
    tflite.write_bytes(conv.convert(tagger, "int8", representative=data.train.X,
                                    metadata=conv.data_metadata(data)).tflite)
    other = build_model("mamba", features=FEATURES + 2, classes=CLASSES, hidden=4, layers=1, steps=STEPS)
    other_run = root / "other_run"
    other_run.mkdir()
    other.save(other_run / "model.keras")
    (other_run / "config.json").write_text("{}")
    train, test = small_tables()
    uji = write_folder(root / "uji", train, test)
    raw = root / "raw" / "house_A"
    raw.mkdir(parents=True)
    (raw / "rx_wearable_data.dat").write_text("timestamp,ap_id,wearable_id,rssi\n")
    return {"root": root, "data": data.path, "run": run, "tflite": tflite, "uji": uji,
            "other_run": other_run, "raw": root / "raw"}


# --------------------------------------------------------------------------- breakers


def copy_data(w, tmp: Path) -> Path:
    return Path(shutil.copytree(w["data"], tmp / "data"))


def rewrite_split(folder: Path, split: str, **arrays) -> Path:
    with np.load(folder / f"{split}.npz") as stored:
        content = {"X": stored["X"], "y": stored["y"]}
    content.update(arrays)
    np.savez_compressed(folder / f"{split}.npz", **content)
    return folder / f"{split}.npz"


def truncated(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def uji_with(w, tmp: Path, edit) -> Path:
    folder = Path(shutil.copytree(w["uji"], tmp / "uji"))
    path = folder / TRAIN_CSV
    path.write_bytes(edit(path.read_bytes()))
    return folder


def replace_cell(text: bytes, new: bytes) -> bytes:
    """Replace the first RSSI cell of the first data row."""
    header, first, rest = text.split(b"\n", 2)
    cells = first.split(b",")
    cells[0] = new
    return b"\n".join([header, b",".join(cells), rest])


def a_file(tmp: Path) -> Path:
    path = tmp / "plain.txt"
    path.write_text("a regular file\n")
    return path


def _written(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def scans_csv(tmp: Path, rows: int = 2 * STEPS) -> Path:
    """A good recording for ``predict``: one column per feature, RSSI in dBm."""
    values = np.random.default_rng(0).uniform(-100, -40, (rows, FEATURES)).round()
    header = ",".join(META["features"])
    return _written(tmp / "scans.csv", (header + "\n" + "\n".join(",".join(f"{v:g}" for v in row) for row in values)
                                        + "\n").encode())


def _written_in(folder: Path, name: str) -> Path:
    """``folder`` holding a file ``name`` of the user's own."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("the user's own\n")
    return folder


def _edit_meta(folder: Path, **fields) -> Path:
    """``folder`` (a prepared copy) with ``fields`` set in its meta.json."""
    meta = json.loads((folder / "meta.json").read_text())
    meta.update(fields)
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def _bad_metadata_name(path: Path) -> Path:
    """The first metadata entry's name made invalid UTF-8, in place."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tinyloc")
    data[at] = 0x99
    path.write_bytes(bytes(data))
    return path


def _batched(path: Path) -> Path:
    """The model's input tensor given a batch of 3, in place (TFLM would refuse a set_input)."""
    from tinyloc_tf.compression.flatbuffer import pack_model, read_model

    fb = read_model(path)
    tensor = fb.tensors[fb.inputs[0]]
    tensor.shape = [3, *list(tensor.shape)[1:]]
    path.write_bytes(pack_model(fb.model))
    return path


def _mlp_run(tmp: Path) -> Path:
    """An untrained MLP run over the corpus's features and classes: not what its .tflite came from."""
    run = tmp / "mlp-run"
    run.mkdir()
    tagger = build_model("mlp", features=FEATURES, classes=CLASSES, hidden=4, layers=1, steps=STEPS)
    tagger.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps({"build_config": tagger.build_config}))
    return run


def _with_config(w, tmp: Path, text: str) -> Path:
    """A copy of the good run whose config.json holds ``text`` (and with a metrics.json)."""
    run = Path(shutil.copytree(w["run"], tmp / "run"))
    (run / "config.json").write_text(text)
    (run / "metrics.json").write_text("{}")
    return run


def bad_data(maker):
    """A case over a broken copy of the prepared data, for several verbs."""
    def build(w, tmp, verb):
        folder = copy_data(w, tmp)
        bad = maker(folder)
        if verb == "info":
            return ["data", "info", str(folder)], 2, bad.name
        if verb == "train":
            return (["train", "--data", str(folder), "--model", "mamba", "--hidden", "2", "--layers", "1",
                     "--epochs", "1", "--out", str(tmp / "run"), "--quiet"], 2, bad.name)
        return (["evaluate", str(w["tflite"]), "--data", str(folder), "--quiet"], 2, bad.name)
    return build


DATA_BREAKERS = {
    "truncated npz": lambda f: truncated(f / "train.npz"),
    "npz is text": lambda f: (f / "val.npz").write_text("X,y\n1,2\n") and f / "val.npz",
    "npy named npz": lambda f: (np.save(f / "test.npz.npy", np.zeros(3)), os.replace(f / "test.npz.npy", f / "test.npz"),
                                f / "test.npz")[-1],
    "X above 1": lambda f: rewrite_split(f, "train", X=np.full((4, STEPS, FEATURES), 3.0, np.float32),
                                         y=np.zeros((4, STEPS), np.int32)),
    "X negative": lambda f: rewrite_split(f, "test", X=np.full((4, STEPS, FEATURES), -0.5, np.float32),
                                          y=np.zeros((4, STEPS), np.int32)),
    "float labels": lambda f: rewrite_split(f, "train", y=np.full((48, STEPS), 1.7)),
    "empty val split": lambda f: rewrite_split(f, "val", X=np.zeros((0, STEPS, FEATURES), np.float32),
                                               y=np.zeros((0, STEPS), np.int32)),
    "meta not utf-8": lambda f: (f / "meta.json").write_bytes(b'{"T": "\xff\xfe"}') and f / "meta.json",
    "meta T negative": lambda f: (f / "meta.json").write_text(json.dumps({**META, "T": -4})) and f / "meta.json",
}


def case_list():
    cases = {}
    for name, maker in DATA_BREAKERS.items():
        for verb in ("info", "train", "evaluate"):
            if verb != "info" and name in ("npz is text", "X negative", "meta T negative"):
                continue  # same loader path as the info case; keeps the corpus fast
            cases[f"data/{verb}: {name}"] = (lambda m, v: lambda w, tmp: bad_data(m)(w, tmp, v))(maker, verb)
    cases.update(CASES)
    return cases


def _uji_case(edit, fragment=TRAIN_CSV):
    def build(w, tmp):
        source = uji_with(w, tmp, edit)
        return ["data", "prepare", "uji", "--source", str(source), "--out", str(tmp / "out"), "--areas", "4"], 2, fragment
    return build


CASES = {
    # ---- raw data
    "uji: invalid utf-8 in a cell": _uji_case(lambda t: replace_cell(t, b"-5\xff0")),
    "uji: invalid utf-8 in the header": _uji_case(lambda t: t.replace(b"WAP001", b"WAP\xe9001", 1)),
    "uji: a 2 MB cell is not echoed whole": _uji_case(lambda t: replace_cell(t, b"x" * 2_000_000)),
    "uji: non-numeric cell": _uji_case(lambda t: replace_cell(t, b"strong")),
    "uji: truncated row": _uji_case(lambda t: t[: t.index(b"\n", 5000)] + b"\n1,2,3\n"),
    "uji: missing source": lambda w, tmp: (["data", "prepare", "uji", "--source", str(tmp / "none.zip"),
                                            "--out", str(tmp / "o")], 2, "none.zip"),
    "uji: --out is the source folder": lambda w, tmp: (
        ["data", "prepare", "uji", "--source", str(w["uji"]), "--out", str(w["uji"]), "--overwrite"], 2, str(w["uji"])),
    "uji: --out holds the source": lambda w, tmp: (
        ["data", "prepare", "uji", "--source", str(w["uji"] / TRAIN_CSV), "--out", str(w["uji"]), "--overwrite"],
        2, TRAIN_CSV),
    "uji: --out exists and is not empty": lambda w, tmp: (
        ["data", "prepare", "uji", "--source", str(w["uji"]), "--out", str(w["data"]), "--areas", "4"], 2, str(w["data"])),
    "uji: --out below a regular file": lambda w, tmp: (
        ["data", "prepare", "uji", "--source", str(w["uji"]), "--out", str(a_file(tmp) / "out")], 2, "plain.txt"),
    "uji: --out in an unwritable place": lambda w, tmp: (
        ["data", "prepare", "uji", "--source", str(w["uji"]), "--out", "/proc/tinyloc-out"], 2, "/proc/tinyloc-out"),
    "uji: --val-fraction 0": lambda w, tmp: (
        ["data", "prepare", "uji", "--source", str(w["uji"]), "--out", str(tmp / "o"), "--val-fraction", "0"],
        2, "--val-fraction"),
    "inhome: --out is the source": lambda w, tmp: (
        ["data", "prepare", "inhome", "--source", str(w["raw"]), "--house", "A", "--out", str(w["raw"]), "--overwrite"],
        2, str(w["raw"])),
    "synth: house exists": lambda w, tmp: (["data", "synth", "--out", str(w["raw"])], 2, "house_A"),
    "info: missing folder": lambda w, tmp: (["data", "info", str(tmp / "nowhere")], 2, "nowhere"),
    # ---- training
    "train: --out below a regular file": lambda w, tmp: (
        ["train", "--data", str(w["data"]), "--model", "mamba", "--hidden", "2", "--layers", "1",
         "--out", str(a_file(tmp) / "run")], 2, "plain.txt"),
    "train: --out is the data folder": lambda w, tmp: (
        ["train", "--data", str(w["data"]), "--model", "mamba", "--hidden", "2", "--layers", "1",
         "--out", str(w["data"]), "--overwrite"], 2, str(w["data"])),
    "train: --lr so high the weights overflow": lambda w, tmp: (
        ["train", "--data", str(w["data"]), "--model", "mlp", "--hidden", "4", "--layers", "1", "--epochs", "3",
         "--schedule", "constant", "--lr", "1e30", "--out", str(tmp / "run"), "--quiet"], 2, "--lr"),
    "data info: scaling is not an object": lambda w, tmp: (
        ["data", "info", str(_edit_meta(copy_data(w, tmp), scaling=None))], 2, "meta.json"),
    "evaluate: data of another representation": lambda w, tmp: (
        ["evaluate", str(w["tflite"]), "--data",
         str(_edit_meta(copy_data(w, tmp), scaling={"representation": "dbm", "not_heard_dbm": -110.0})), "--quiet"],
        2, "representation"),
    "train: --seed 2**32": lambda w, tmp: (
        ["train", "--data", str(w["data"]), "--model", "mlp", "--hidden", "4", "--layers", "1", "--seed", str(2**32),
         "--out", str(tmp / "run")], 2, "--seed"),
    "train: --out exists": lambda w, tmp: (
        ["train", "--data", str(w["data"]), "--model", "mamba", "--hidden", "2", "--layers", "1",
         "--out", str(w["run"])], 2, str(w["run"])),
    "train: --epochs 0": lambda w, tmp: (
        ["train", "--data", str(w["data"]), "--model", "mamba", "--hidden", "2", "--layers", "1",
         "--out", str(tmp / "r"), "--epochs", "0"], 2, "--epochs"),
    "train: --lr -1": lambda w, tmp: (
        ["train", "--data", str(w["data"]), "--model", "mamba", "--hidden", "2", "--layers", "1",
         "--out", str(tmp / "r"), "--lr", "-1"], 2, "--lr"),
    "train: --hidden 0": lambda w, tmp: (
        ["train", "--data", str(w["data"]), "--model", "mamba", "--hidden", "0", "--layers", "1",
         "--out", str(tmp / "r")], 2, "--hidden"),
    "distill: --alpha 2": lambda w, tmp: (
        ["distill", "--teacher", str(w["run"]), "--data", str(w["data"]), "--student-model", "mamba",
         "--hidden", "2", "--layers", "1", "--out", str(tmp / "s"), "--alpha", "2"], 2, "--alpha"),
    "baselines: --out is the data folder": lambda w, tmp: (
        ["baselines", "--data", str(w["data"]), "--out", str(w["data"]), "--overwrite"], 2, str(w["data"])),
    "sweep: --out is the data": lambda w, tmp: (
        ["sweep", "--data", str(copy_data(w, tmp)), "--out", str(tmp / "data"), "--family", "mlp", "--no-baselines"],
        2, "data"),
    "sweep: --out holds other files": lambda w, tmp: (
        ["sweep", "--data", str(w["data"]), "--out", str(_written_in(tmp / "mine", "notes.txt")), "--family", "mlp",
         "--no-baselines"], 2, "mine"),
    "baselines: --jobs beyond the machine": lambda w, tmp: (
        ["baselines", "--data", str(w["data"]), "--out", str(tmp / "b"), "--jobs", "100000"], 2, "--jobs"),
    "baselines: --models names none": lambda w, tmp: (
        ["baselines", "--data", str(w["data"]), "--out", str(tmp / "b"), "--models", ","], 2, "--models"),
    "deploy: --arena-bytes with the aot backend": lambda w, tmp: (
        ["deploy", str(w["tflite"]), "--backend", "aot", "--arena-bytes", "4096", "--data", str(w["data"])],
        2, "--arena-bytes"),
    "pipeline: --grid unknown": lambda w, tmp: (["pipeline", "--work", str(tmp / "p"), "--grid", "foo"], 2, "--grid"),
    "pipeline: --train-steps shorter than a window": lambda w, tmp: (
        ["pipeline", "--work", str(tmp / "p"), "--train-steps", "5"], 2, "--train-steps"),
    "pipeline: --work holds other files": lambda w, tmp: (
        ["pipeline", "--work", str(_written_in(tmp / "mine", "notes.txt"))], 2, "mine"),
    "sweep: --ray where nothing answers": lambda w, tmp: (
        ["sweep", "--data", str(w["data"]), "--out", str(tmp / "s"), "--ray", "127.0.0.1:1", "--family", "mlp"],
        2, "127.0.0.1:1"),
    "sweep: --ray not an address": lambda w, tmp: (
        ["sweep", "--data", str(w["data"]), "--out", str(tmp / "s"), "--ray", "nowhere", "--family", "mlp"],
        2, "--ray"),
    "sweep: --jobs 0": lambda w, tmp: (["sweep", "--data", str(w["data"]), "--out", str(tmp / "s"), "--jobs", "0"],
                                       2, "--jobs"),
    "report: missing sweep": lambda w, tmp: (["report", str(tmp / "nosweep")], 2, "nosweep"),
    "report: a report exists": lambda w, tmp: (["report", str(_with_report(tmp))], 2, "report.md"),
    "report: --out holds a results.csv": lambda w, tmp: (
        ["report", str(_with_report(tmp)), "--out", str(_written_in(tmp / "mine", "results.csv"))], 2, "results.csv"),
    # ---- conversion
    "convert: --representative-size 0": lambda w, tmp: (
        ["convert", str(w["run"]), "--quant", "int8", "--out", str(tmp / "m.tflite"), "--representative-size", "0"],
        2, "--representative-size"),
    "convert: --calibration-trim 100": lambda w, tmp: (
        ["convert", str(w["run"]), "--quant", "int8", "--out", str(tmp / "m.tflite"), "--calibration-trim", "100"],
        2, "--calibration-trim"),
    "convert: --out exists": lambda w, tmp: (
        ["convert", str(w["run"]), "--quant", "int8", "--out", str(w["tflite"])], 2, str(w["tflite"])),
    "convert: --out is the run folder": lambda w, tmp: (
        ["convert", str(w["run"]), "--quant", "int8", "--out", str(w["run"]), "--overwrite"], 2, str(w["run"])),
    "convert: --out below a regular file": lambda w, tmp: (
        ["convert", str(w["run"]), "--quant", "int8", "--out", str(a_file(tmp) / "m.tflite")], 2, "plain.txt"),
    "convert: no model.keras": lambda w, tmp: (
        ["convert", str(tmp), "--quant", "int8", "--out", str(tmp / "m.tflite")], 2, "model.keras"),
    "convert: truncated model.keras": lambda w, tmp: (
        ["convert", str(truncated(Path(shutil.copytree(w["run"], tmp / "run")) / "model.keras").parent),
         "--quant", "int8", "--out", str(tmp / "m.tflite")], 2, "model.keras"),
    # ---- models
    "evaluate: truncated tflite": lambda w, tmp: (
        ["evaluate", str(truncated(Path(shutil.copy(w["tflite"], tmp / "t.tflite")))), "--data", str(w["data"])],
        2, "t.tflite"),
    "evaluate: corrupted header": lambda w, tmp: (
        ["evaluate", str(_poke(Path(shutil.copy(w["tflite"], tmp / "h.tflite")), 0, b"\xf0\xff\x00\x00")),
         "--data", str(w["data"])], 2, "h.tflite"),
    "evaluate: corrupted body": lambda w, tmp: (
        ["evaluate", str(_scramble(Path(shutil.copy(w["tflite"], tmp / "b.tflite")))), "--data", str(w["data"])],
        2, "b.tflite"),
    "evaluate: metadata name not UTF-8": lambda w, tmp: (
        ["evaluate", str(_bad_metadata_name(Path(shutil.copy(w["tflite"], tmp / "n.tflite")))), "--data",
         str(w["data"])], 2, "n.tflite"),
    "evaluate: input of several windows": lambda w, tmp: (
        ["evaluate", str(_batched(Path(shutil.copy(w["tflite"], tmp / "k.tflite")))), "--data", str(w["data"])],
        2, "k.tflite"),
    "evaluate: not a tflite": lambda w, tmp: (["evaluate", str(a_file(tmp)), "--data", str(w["data"])], 2, "plain.txt"),
    "evaluate: missing model": lambda w, tmp: (["evaluate", str(tmp / "no.tflite"), "--data", str(w["data"])],
                                               2, "no.tflite"),
    "evaluate: --arena-kb -5": lambda w, tmp: (
        ["evaluate", str(w["tflite"]), "--data", str(w["data"]), "--arena-kb", "-5"], 2, "--arena-kb"),
    "evaluate: --run from another dataset": lambda w, tmp: (
        ["evaluate", str(w["tflite"]), "--data", str(w["data"]), "--run", str(w["other_run"]), "--quiet"],
        2, str(w["other_run"])),
    "evaluate: --run of another architecture": lambda w, tmp: (
        ["evaluate", str(w["tflite"]), "--data", str(w["data"]), "--run", str(_mlp_run(tmp)), "--quiet"], 2, "--run"),
    "evaluate: --out exists": lambda w, tmp: (
        ["evaluate", str(w["tflite"]), "--data", str(w["data"]), "--out", str(w["run"] / "config.json")],
        2, "config.json"),
    "convert: --out inside the run": lambda w, tmp: (
        ["convert", str(Path(shutil.copytree(w["run"], tmp / "run"))), "--quant", "int8",
         "--out", str(tmp / "run" / "model.keras"), "--overwrite"], 2, "model.keras"),
    "evaluate: --out inside the data": lambda w, tmp: (
        ["evaluate", str(w["tflite"]), "--data", str(copy_data(w, tmp)), "--out", str(tmp / "data" / "val.npz"),
         "--overwrite"], 2, "val.npz"),
    "refit: --out is the run": lambda w, tmp: (
        ["refit", str(Path(shutil.copytree(w["run"], tmp / "run"))), "--out", str(tmp / "run"), "--overwrite"],
        2, "run"),
    "convert: config.json is a list": lambda w, tmp: (
        ["convert", str(_with_config(w, tmp, "[]")), "--quant", "int8", "--out", str(tmp / "m.tflite")],
        2, "config.json"),
    "convert: build_config is a string": lambda w, tmp: (
        ["convert", str(_with_config(w, tmp, '{"build_config": "x"}')), "--quant", "int8", "--out", str(tmp / "m.tflite")],
        2, "build_config"),
    "refit: config.json without training": lambda w, tmp: (
        ["refit", str(_with_config(w, tmp, '{"data_fingerprint": "0", "build_config": {}}')), "--out", str(tmp / "r")],
        2, "training"),
    "predict: truncated tflite": lambda w, tmp: (
        ["predict", str(truncated(Path(shutil.copy(w["tflite"], tmp / "t.tflite")))), "--input", str(scans_csv(tmp)),
         "--out", str(tmp / "rooms.csv")], 2, "t.tflite"),
    "predict: not a tflite": lambda w, tmp: (
        ["predict", str(a_file(tmp)), "--input", str(scans_csv(tmp)), "--out", str(tmp / "rooms.csv")], 2, "plain.txt"),
    "predict: missing input": lambda w, tmp: (
        ["predict", str(w["tflite"]), "--input", str(tmp / "no.csv"), "--out", str(tmp / "rooms.csv")], 2, "no.csv"),
    "predict: input is a folder": lambda w, tmp: (
        ["predict", str(w["tflite"]), "--input", str(w["data"]), "--out", str(tmp / "rooms.csv")], 2, str(w["data"])),
    "predict: empty input": lambda w, tmp: (
        ["predict", str(w["tflite"]), "--input", str(_written(tmp / "e.csv", b"")), "--out", str(tmp / "rooms.csv")],
        2, "e.csv"),
    "predict: binary input": lambda w, tmp: (
        ["predict", str(w["tflite"]), "--input", str(_written(tmp / "b.csv", bytes(range(256)) * 8)),
         "--out", str(tmp / "rooms.csv")], 2, "b.csv"),
    "predict: header only": lambda w, tmp: (
        ["predict", str(w["tflite"]), "--input", str(_written(tmp / "h.csv", b"ap0,ap1,ap2,ap3,ap4\n")),
         "--out", str(tmp / "rooms.csv")], 2, "h.csv"),
    "predict: fewer rows than a window": lambda w, tmp: (
        ["predict", str(w["tflite"]), "--input", str(scans_csv(tmp, rows=STEPS - 1)), "--out", str(tmp / "rooms.csv")],
        2, "scans.csv"),
    "predict: --out is the input": lambda w, tmp: (
        ["predict", str(w["tflite"]), "--input", str(scans_csv(tmp)), "--out", str(tmp / "scans.csv")], 2, "scans.csv"),
    "predict: --lag -1": lambda w, tmp: (
        ["predict", str(w["tflite"]), "--input", str(scans_csv(tmp)), "--out", str(tmp / "rooms.csv"), "--lag", "-1"],
        2, "--lag"),
    "export-c: truncated tflite": lambda w, tmp: (
        ["export-c", str(truncated(Path(shutil.copy(w["tflite"], tmp / "e.tflite")))), "--out", str(tmp / "c")],
        2, "e.tflite"),
    "export-c: --crf is a list": lambda w, tmp: (
        ["export-c", str(w["tflite"]), "--out", str(tmp / "c"), "--crf", str(_written(tmp / "crf.json", b"[1, 2]"))],
        2, "crf.json"),
    "export-c: --crf transitions not numbers": lambda w, tmp: (
        ["export-c", str(w["tflite"]), "--out", str(tmp / "c"), "--crf",
         str(_written(tmp / "crf.json", b'{"transitions": "abc", "start": [1], "end": [1]}'))], 2, "crf.json"),
    "evaluate: --arena-kb beyond 1 GiB": lambda w, tmp: (
        ["evaluate", str(w["tflite"]), "--data", str(w["data"]), "--arena-kb", "3e6"], 2, "--arena-kb"),
    "compile: --prefix not a C identifier": lambda w, tmp: (
        ["compile", str(w["tflite"]), "--out", str(tmp / "c"), "--prefix", "123"], 2, "--prefix"),
    "compile: --check -1": lambda w, tmp: (
        ["compile", str(w["tflite"]), "--out", str(tmp / "c"), "--check", "-1"], 2, "--check"),
    "export-c: --out is a file": lambda w, tmp: (
        ["export-c", str(w["tflite"]), "--out", str(a_file(tmp)), "--overwrite"], 2, "plain.txt"),
    "data samples: no such house": lambda w, tmp: (
        ["data", "samples", "inhome", "--source", str(w["raw"]), "--house", "Q", "--out", str(tmp / "s.csv")], 2, "Q"),
    "data samples: --out is the source": lambda w, tmp: (
        ["data", "samples", "inhome", "--source", str(w["raw"]), "--house", "A", "--out", str(w["raw"])], 2, "raw"),
    "data fetch: --dest is a file": lambda w, tmp: (["data", "fetch", "uji", "--dest", str(a_file(tmp))], 2, "plain.txt"),
    "export-c: --windows 0": lambda w, tmp: (["export-c", str(w["tflite"]), "--out", str(tmp / "c"), "--windows", "0"],
                                             2, "--windows"),
    "compile: truncated tflite": lambda w, tmp: (
        ["compile", str(truncated(Path(shutil.copy(w["tflite"], tmp / "k.tflite")))), "--out", str(tmp / "c")],
        2, "k.tflite"),
    "deploy: --ram-kb -8": lambda w, tmp: (["deploy", str(w["tflite"]), "--ram-kb", "-8"], 2, "--ram-kb"),
    "deploy: --windows 0": lambda w, tmp: (["deploy", str(w["tflite"]), "--windows", "0"], 2, "--windows"),
    "deploy: --arena-bytes -5": lambda w, tmp: (["deploy", str(w["tflite"]), "--arena-bytes", "-5"], 2, "--arena-bytes"),
    "deploy: --stack-bytes 1.5": lambda w, tmp: (["deploy", str(w["tflite"]), "--stack-bytes", "1.5"], 2, "--stack-bytes"),
}


def _with_report(tmp: Path) -> Path:
    (tmp / "sweep").mkdir()
    (tmp / "sweep" / "report.md").write_text("# an earlier report\n")
    return tmp / "sweep"


def _poke(path: Path, offset: int, data: bytes) -> Path:
    buf = bytearray(path.read_bytes())
    buf[offset: offset + len(data)] = data
    path.write_bytes(bytes(buf))
    return path


def _scramble(path: Path) -> Path:
    """Overwrite the flatbuffer's tables (its first quarter after the header) with noise."""
    buf = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    buf[8: len(buf) // 4] = rng.integers(0, 256, len(buf) // 4 - 8, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(buf))
    return path


def snapshot(*folders: Path) -> dict[str, str]:
    files = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                files[str(path)] = "folder"
    return files


def run_cli(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse rejects before any handler runs
        return int(exc.code)


ALL_CASES = case_list()


def test_the_corpus_is_large_enough():
    assert len(ALL_CASES) >= 40


@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_bad_input(case, world, tmp_path, capfd):
    argv, status, fragment = ALL_CASES[case](world, tmp_path)
    before = snapshot(world["root"], tmp_path)
    code = run_cli(argv)
    err = capfd.readouterr().err
    assert code == status, f"{case}: exit {code}, stderr: {err[-2000:]}"
    assert "Traceback" not in err and "internal error" not in err, err[-2000:]
    assert fragment in err, f"{case}: {fragment!r} not in {err[-2000:]!r}"
    assert len(err) < 2000, f"{case}: {len(err)} characters of stderr"
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err
    assert snapshot(world["root"], tmp_path) == before, f"{case}: an input or output changed"
