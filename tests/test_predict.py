"""``tinyloc predict``: a CSV of RSSI in dBm -> a room per row, as evaluate decodes the same inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from helpers import fc_model_bytes
from tinyloc_tf.cli import main
from tinyloc_tf.deployment.predict import covering_window_starts
from tinyloc_tf.errors import DataError

FEATURES = [f"ap{i}" for i in range(6)]


def dbm_of(inputs: np.ndarray) -> np.ndarray:
    """The helpers' models read min-max inputs over [-110, -30] dBm: the dBm that give ``inputs``
    back exactly (float32 inputs times 80 are exact in float64)."""
    return -110.0 + 80.0 * inputs.astype(np.float64)


def recording(rng, rows: int) -> np.ndarray:
    return rng.random((rows, len(FEATURES))).astype(np.float32)


def write_csv(path, inputs, **other) -> None:
    table = pd.DataFrame(dbm_of(inputs), columns=FEATURES)
    for name, values in other.items():
        table.insert(0, name, values)
    table.to_csv(path, index=False)


def predict(tmp_path, capsys, model_bytes, csv, *extra) -> tuple[int, pd.DataFrame | None, str]:
    model = tmp_path / "m.tflite"
    model.write_bytes(model_bytes)
    out = tmp_path / "rooms.csv"
    status = main(["predict", str(model), "--input", str(csv), "--out", str(out), "--quiet", *extra])
    captured = capsys.readouterr()
    return status, (pd.read_csv(out) if out.exists() else None), captured.out + captured.err


def test_covering_window_starts_cover_every_row_once_but_the_last_overlap():
    assert covering_window_starts(20, 20) == [0]
    assert covering_window_starts(45, 20) == [0, 20, 25]
    assert covering_window_starts(40, 20) == [0, 20]


def test_per_scan_model_labels_every_row_as_viterbi_does_and_keeps_the_other_columns(tmp_path, capsys):
    from tinyloc_tf.deployment.host import predict_paths
    from tinyloc_tf.compression.metadata import read_metadata

    model = fc_model_bytes(steps=1)
    inputs = recording(np.random.default_rng(0), 40)
    write_csv(tmp_path / "scans.csv", inputs, scan_id=[f"s{i}" for i in range(40)])
    status, rooms, text = predict(tmp_path, capsys, model, tmp_path / "scans.csv")
    assert status == 0, text
    paths, _ = predict_paths(model, inputs[:, None, :])
    classes = np.array(read_metadata(model)["classes"])
    assert list(rooms.columns) == ["scan_id", "room"]
    assert rooms["scan_id"].tolist() == [f"s{i}" for i in range(40)]
    assert rooms["room"].tolist() == classes[paths[:, 0]].tolist()
    summary = json.loads(text[text.index("{"):])
    assert summary["kind"] == "per scan" and summary["rows"] == 40 and sum(summary["rooms"].values()) == 40


def test_window_model_decodes_each_stream_in_windows_the_last_ending_at_its_end(tmp_path, capsys):
    from tinyloc_tf.compression.metadata import read_metadata
    from tinyloc_tf.deployment.host import predict_paths

    model = fc_model_bytes(steps=4)
    rng = np.random.default_rng(1)
    first, second = recording(rng, 10), recording(rng, 4)
    # Streams interleaved in the file: each is its rows in file order.
    order = [0, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0]
    inputs = np.empty((14, len(FEATURES)), np.float32)
    inputs[np.array(order) == 0], inputs[np.array(order) == 1] = first, second
    write_csv(tmp_path / "rec.csv", inputs, session=["a" if o == 0 else "b" for o in order])
    status, rooms, text = predict(tmp_path, capsys, model, tmp_path / "rec.csv", "--stream-column", "session")
    assert status == 0, text

    classes = np.array(read_metadata(model)["classes"])
    paths, _ = predict_paths(model, np.stack([first[0:4], first[4:8], first[6:10], second]))
    expected_first = np.concatenate([paths[0], paths[1], paths[2][2:]])  # rows 6-7 from the second window
    got = rooms["room"].to_numpy()
    assert got[np.array(order) == 0].tolist() == classes[expected_first].tolist()
    assert got[np.array(order) == 1].tolist() == classes[paths[3]].tolist()
    assert rooms["session"].tolist() == ["a" if o == 0 else "b" for o in order]


def test_not_heard_markers_read_as_the_floor(tmp_path, capsys):
    from tinyloc_tf.compression.metadata import read_metadata, write_metadata

    meta = read_metadata(fc_model_bytes(steps=1))
    meta["scaling"] = {"representation": "dbm", "not_heard_dbm": -105.0, "not_heard": 100}
    model = write_metadata(fc_model_bytes(steps=1, metadata=False), meta)
    table = pd.DataFrame({name: [-105, 100, "", -120, -60] for name in FEATURES})
    table.to_csv(tmp_path / "scans.csv", index=False)
    status, rooms, text = predict(tmp_path, capsys, model, tmp_path / "scans.csv")
    assert status == 0, text
    assert rooms["room"].nunique() <= 2 and len(set(rooms["room"][:4])) == 1  # four spellings of not heard


@pytest.mark.parametrize("cells, message", [
    ({"ap3": "loud"}, "line 3, column ap3: 'loud' is not a number"),
    ({"ap2": 5}, "line 3, column ap2: '5' is not an RSSI in dBm"),
    ({"ap1": "nan"}, "line 3, column ap1"),
])
def test_a_bad_cell_is_named_and_nothing_is_written(tmp_path, capsys, cells, message):
    inputs = recording(np.random.default_rng(2), 3)
    write_csv(tmp_path / "scans.csv", inputs)
    table = pd.read_csv(tmp_path / "scans.csv", dtype=str)
    for column, value in cells.items():
        table.loc[1, column] = str(value)
    table.to_csv(tmp_path / "scans.csv", index=False)
    status, rooms, text = predict(tmp_path, capsys, fc_model_bytes(steps=1), tmp_path / "scans.csv")
    assert status == 2 and rooms is None
    assert message in text and "Traceback" not in text


@pytest.mark.parametrize("bad, message", [
    (None, None),
    ("5", "line 12, column ap2: '5' is not an RSSI in dBm"),  # read as numbers
    ("loud", "line 12, column ap2: 'loud' is not a number"),  # read again as text
])
def test_reading_in_chunks_gives_the_whole_file_and_names_lines_across_chunks(tmp_path, bad, message):
    from tinyloc_tf.compression.metadata import read_metadata
    from tinyloc_tf.data.representation import Representation
    from tinyloc_tf.deployment.predict import read_recording

    inputs = recording(np.random.default_rng(5), 23)
    write_csv(tmp_path / "scans.csv", inputs, visit=[i // 5 for i in range(23)])
    if bad is not None:
        table = pd.read_csv(tmp_path / "scans.csv", dtype=str)
        table.loc[10, "ap2"] = bad  # line 12 of the file, in the third chunk of 4 rows
        table.to_csv(tmp_path / "scans.csv", index=False)
    scaling = read_metadata(fc_model_bytes(steps=1))["scaling"]
    if message is not None:
        with pytest.raises(DataError, match=message):
            read_recording(tmp_path / "scans.csv", FEATURES, scaling, "visit", chunk_rows=4)
        return
    whole = read_recording(tmp_path / "scans.csv", FEATURES, scaling, "visit")
    chunked = read_recording(tmp_path / "scans.csv", FEATURES, scaling, "visit", chunk_rows=4)
    expected, _ = Representation.from_meta(scaling).apply(dbm_of(inputs))
    for got in (whole, chunked):
        np.testing.assert_array_equal(got[1], expected)
        assert got[2].tolist() == [str(i // 5) for i in range(23)]  # other columns stay text
        assert got[0]["visit"].tolist() == got[2].tolist()


@pytest.mark.parametrize("steps", [1, 4])
def test_predict_loads_neither_tensorflow_nor_keras(tmp_path, steps):
    # A firmware engineer's check of a recording should start in a second, not in the seconds
    # and the 0.7 GB that importing TensorFlow costs: reading and decoding need neither.
    model = tmp_path / "m.tflite"
    model.write_bytes(fc_model_bytes(steps=steps))
    write_csv(tmp_path / "scans.csv", recording(np.random.default_rng(2), 12))
    code = ("import sys; from tinyloc_tf.cli import main; "
            f"status = main(['predict', {str(model)!r}, '--input', {str(tmp_path / 'scans.csv')!r}, "
            f"'--out', {str(tmp_path / 'rooms.csv')!r}, '--quiet']); "
            "print(status, sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "0 []", done.stdout + done.stderr
    assert len(pd.read_csv(tmp_path / "rooms.csv")) == 12


def test_missing_features_short_streams_and_existing_outputs_are_refused(tmp_path, capsys):
    rng = np.random.default_rng(3)
    write_csv(tmp_path / "scans.csv", recording(rng, 3))
    pd.read_csv(tmp_path / "scans.csv").drop(columns=["ap0", "ap4"]).to_csv(tmp_path / "few.csv", index=False)
    status, _, text = predict(tmp_path, capsys, fc_model_bytes(steps=1), tmp_path / "few.csv")
    assert status == 2 and "2 of the model's 6 feature columns are missing (ap0, ap4)" in text

    status, _, text = predict(tmp_path, capsys, fc_model_bytes(steps=4), tmp_path / "scans.csv")
    assert status == 2 and "scans.csv: 3 rows, but" in text and "windows of 4 rows" in text

    status, _, text = predict(tmp_path, capsys, fc_model_bytes(steps=1), tmp_path / "scans.csv", "--stream-column", "id")
    assert status == 2 and "no column 'id'" in text

    status, _, text = predict(tmp_path, capsys, fc_model_bytes(steps=1), tmp_path / "scans.csv", "--lag", "3")
    assert status == 2 and "--lag apply to streaming step models" in text

    (tmp_path / "rooms.csv").write_text("keep me\n")
    status, _, text = predict(tmp_path, capsys, fc_model_bytes(steps=1), tmp_path / "scans.csv")
    assert status == 2 and "--overwrite" in text
    assert (tmp_path / "rooms.csv").read_text() == "keep me\n"


def test_streaming_model_decodes_each_stream_online_from_a_zero_state(tmp_path, capsys):
    import keras

    from tinyloc_tf.compression.streaming import convert_streaming
    from tinyloc_tf.decoding import decode_stream
    from tinyloc_tf.deployment.streaming import StreamRunner
    from tinyloc_tf.models import build_model

    keras.utils.set_random_seed(0)
    tagger = build_model("mamba", features=6, classes=3, hidden=4, layers=1, steps=20, int8_friendly=True)
    rng = np.random.default_rng(4)
    first, second = recording(rng, 30), recording(rng, 12)
    metadata = {"features": FEATURES, "classes": ["a", "b", "c"],
                "scaling": {"min": [-110.0] * 6, "max": [-30.0] * 6}}
    model = convert_streaming(tagger, [first], metadata, quant="int8", representative_size=64).tflite
    write_csv(tmp_path / "rec.csv", np.concatenate([first, second]), visit=[1] * 30 + [2] * 12)
    status, rooms, text = predict(tmp_path, capsys, model, tmp_path / "rec.csv", "--stream-column", "visit",
                                  "--lag", "3", "--reset-every", "10")
    assert status == 0, text

    from tinyloc_tf.compression.metadata import read_metadata

    crf = read_metadata(model)["crf"]
    runner = StreamRunner(model)
    expected = []
    for stream in (first, second):
        _, emissions = runner.run(stream, reset_every=10)
        expected += decode_stream(emissions, np.asarray(crf["transitions"], np.float32),
                                  np.asarray(crf["start"], np.float32), "viterbi", 3).tolist()
    assert rooms["room"].tolist() == np.array(["a", "b", "c"])[expected].tolist()
    assert json.loads(text[text.index("{"):])["kind"] == "streaming"


def test_uji_validation_file_reads_as_prepare_reads_it(tmp_path, capsys, uji_zip):
    """UJIIndoorLoc's own test file is valid input; its rooms are the shipped model's paths on
    the prepared test split (same rows, same order)."""
    import zipfile
    from pathlib import Path

    from tinyloc_tf.deployment.host import predict_paths

    model = Path(__file__).resolve().parents[1] / "models" / "ujiindoorloc" / "32kb.tflite"
    with zipfile.ZipFile(uji_zip) as archive:
        name = next(n for n in archive.namelist() if n.endswith("validationData.csv"))
        (tmp_path / "validationData.csv").write_bytes(archive.read(name))
    status, rooms, text = predict(tmp_path, capsys, model.read_bytes(), tmp_path / "validationData.csv")
    assert status == 0, text
    assert len(rooms) == 1111 and "PHONEID" in rooms.columns and "WAP001" not in rooms.columns

    from tinyloc_tf.compression.metadata import read_metadata
    from tinyloc_tf.data.uji import prepare_uji

    prepared = prepare_uji(uji_zip, tmp_path / "uji", representation="powed")
    X = np.load(Path(prepared) / "test.npz")["X"]
    paths, _ = predict_paths(model, X)
    assert rooms["room"].tolist() == np.array(read_metadata(model)["classes"])[paths[:, 0]].tolist()


def test_a_raw_house_recording_through_samples_and_predict_scores_as_the_card_says(tmp_path, capsys):
    """Raw in-home files -> ``data samples`` -> ``predict`` with the shipped streaming model: the
    rooms agree with the annotations about as often as the card's test accuracy (the card scores
    the same sessions, prepared into streams)."""
    from pathlib import Path

    from tinyloc_tf.data.synth import synthesize_house

    shipped = Path(__file__).resolve().parents[1] / "models" / "synth-house-a-streaming"
    card = json.loads((shipped / "32kb.json").read_text())
    assert card["data"]["synthetic"] and card["data"]["house"] == "A"
    synthesize_house(tmp_path / "raw", seed=0)  # the house the shipped model was trained on
    assert main(["data", "samples", "inhome", "--source", str(tmp_path / "raw"), "--house", "A",
                 "--out", str(tmp_path / "samples.csv")]) == 0
    (tmp_path / "m.json").write_text(json.dumps(card))  # the card beside the model: its decoding is the default
    status, rooms, text = predict(tmp_path, capsys, (shipped / "32kb.tflite").read_bytes(), tmp_path / "samples.csv",
                                  "--stream-column", "session", "--truth-column", "room_annotated")
    assert status == 0, text
    streaming = card["model"]["streaming"]
    assert json.loads(text[text.index("{"):])["decoding"] == {
        "method": streaming["decoder"], "lag": streaming["lag"], "reset_every": streaming["reset_every"],
        "from": "the card m.json and the flags"}
    labelled = rooms[rooms["room_annotated"].notna()]
    accuracy = (labelled["room"] == labelled["room_annotated"]).mean()
    scored = json.loads(text[text.index("{"):])["scored"]
    assert scored["rows"] == len(labelled) and scored["accuracy"] == pytest.approx(accuracy)
    assert abs(accuracy - card["metrics"]["test"]["accuracy"]) < 0.03, (accuracy, card["metrics"]["test"])


def test_truth_column_is_checked_before_any_inference(tmp_path, capsys):
    inputs = recording(np.random.default_rng(5), 4)
    write_csv(tmp_path / "scans.csv", inputs, truth=["kitchen", "", "attic", "bedroom"])
    status, rooms, text = predict(tmp_path, capsys, fc_model_bytes(steps=1), tmp_path / "scans.csv",
                                  "--truth-column", "truth")
    assert status == 2 and rooms is None and "'attic', not among the model's classes" in text
    write_csv(tmp_path / "scans.csv", inputs, truth=["kitchen", "", "kitchen", "bedroom"])
    status, rooms, text = predict(tmp_path, capsys, fc_model_bytes(steps=1), tmp_path / "scans.csv",
                                  "--truth-column", "truth")
    scored = json.loads(text[text.index("{"):])["scored"]
    assert status == 0 and scored["rows"] == 3
    hits = [room == truth for room, truth in zip(rooms["room"], rooms["truth"]) if isinstance(truth, str)]
    assert scored["accuracy"] == pytest.approx(np.mean(hits))
