"""Localise new recordings with a ``.tflite``: raw RSSI in dBm in, one room per row out.

    tinyloc predict M.tflite --input SCANS.csv --out ROOMS.csv [--stream-column COL]

What a model needs to read a recording is in its own metadata (``tinyloc convert`` writes
it): the feature names (the CSV's columns), the input representation (dBm -> model input,
``data/representation.py``), the class names and the CRF. Three kinds of model, one rule for
rows: one row is one scan (UJIIndoorLoc) or one sample at the model's rate (in-home, 5 Hz):

``per scan``   (``T = 1``) every row on its own; UJIIndoorLoc's own CSV files are valid input.
``windows``    (``T > 1``) each stream cut into windows of ``T`` rows, one after the other, the
               last one ending at the stream's end (so it may overlap the one before); each
               window decoded with Viterbi; a row takes the room of the first window holding it.
``streaming``  (``tinyloc convert --streaming``) each stream fed sample by sample from a zero
               state, decoded online with fixed-lag Viterbi (``--lag``) or forward filtering,
               as ``tinyloc evaluate --streaming`` scores it; the decoder, lag and state reset
               default to the model card's (``M.json`` beside ``M.tflite``), as it was scored.

A stream is the whole file, or with ``--stream-column`` the rows sharing that column's value
(in file order). Not heard: an empty cell, the dataset's own marker (UJIIndoorLoc's ``100``,
from the metadata) or any reading at or below the representation's floor. Columns that are
not features (ids, timestamps, true labels) are copied to the output, then ``room`` (an input
column already called ``room`` is copied as ``room_given``). With ``--truth-column COL`` (true
class names, empty where unknown) the summary also scores the rooms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinyloc_tf.errors import DataError, TinylocError, shown

#: The output column with the predicted class name.
ROOM_COLUMN = "room"
KINDS = ("per scan", "windows", "streaming")


def model_kind(meta: dict) -> str:
    """Which of :data:`KINDS` a model's metadata describes."""
    if meta.get("streaming"):
        return "streaming"
    return "per scan" if int(meta.get("T", 1)) == 1 else "windows"


#: Rows read and turned into model inputs at a time: memory stays near the inputs' own
#: (float32), however wide the file (UJIIndoorLoc: 520 features plus 9 text columns).
CHUNK_ROWS = 8192


def read_recording(path: Path, features: list[str], scaling: dict, stream_column: str | None = None,
                   chunk_rows: int = CHUNK_ROWS):
    """``(frame of the other columns, model inputs float32 [n, F], stream ids [n])`` of a CSV of dBm.

    Every feature column must be there, once; a cell must be empty, a number at most 0 dBm, or
    the metadata's not-heard marker. Errors name the file, the line and the column. The inputs
    are the representation of ``scaling`` (``data/representation.py``), applied row by row as
    the file is read in chunks of ``chunk_rows``.
    """
    from tinyloc_tf.data.representation import Representation

    representation = Representation.from_meta(scaling)
    marker = scaling.get("not_heard")
    # The header as written (pandas would rename a repeated column), checked before the values are read.
    header = [str(name) for name in _read_csv(path, nrows=1, header=None, dtype=str).iloc[0]]
    repeated = sorted({name for name in header if header.count(name) > 1 and name in features})
    if repeated:
        raise DataError(f"{path}: the feature column {repeated[0]!r} appears more than once")
    missing = [name for name in features if name not in header]
    if missing:
        found = "" if len(missing) < len(features) else (
            f"; its columns are {', '.join(header[:3])}{', ...' if len(header) > 3 else ''}")
        raise DataError(f"{path}: {len(missing)} of the model's {len(features)} feature columns are missing "
                        f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}){found}")
    if stream_column is not None and stream_column not in header:
        raise DataError(f"{path}: no column {stream_column!r} (--stream-column)")
    if stream_column in features:
        raise DataError(f"--stream-column {stream_column!r} is one of the model's features")

    # Features as numbers straight away (a 100,000-scan file as text takes gigabytes), the other
    # columns as text, copied through unchanged. A file with an empty cell (not heard) or one that
    # is not a number is read again as text, cell by cell.
    try:
        chunks = _read_inputs(path, features, header, representation, marker, chunk_rows, as_text=False)
    except ValueError:  # pandas: a feature cell is not a float
        chunks = _read_inputs(path, features, header, representation, marker, chunk_rows, as_text=True)
    if sum(len(inputs) for _, inputs in chunks) == 0:
        raise DataError(f"{path}: no rows")
    import pandas as pd

    other = pd.concat([chunk_other for chunk_other, _ in chunks], ignore_index=True)
    inputs = np.concatenate([chunk_inputs for _, chunk_inputs in chunks])
    streams = other[stream_column].to_numpy() if stream_column else np.zeros(len(other), dtype=int)
    return other, inputs, streams


def _read_inputs(path: Path, features: list[str], header: list[str], representation, marker, chunk_rows: int,
                 as_text: bool) -> list[tuple]:
    """``[(the other columns, model inputs float32)]``, one pair per chunk of rows; the features
    are read as float64, or with ``as_text`` as text and parsed cell by cell."""
    dtype = str if as_text else dict.fromkeys(header, str) | dict.fromkeys(features, "float64")
    chunks, line = [], 2  # the file line of the chunk's first row
    for frame in _csv_chunks(path, chunk_rows, dtype=dtype, na_filter=False):
        chunks.append(_chunk_inputs(path, frame, features, representation, marker, line, as_text))
        line += len(frame)
    return chunks


def _chunk_inputs(path: Path, frame, features: list[str], representation, marker, first_line: int, as_text: bool):
    """``(the other columns, model inputs float32)`` of one chunk, its cells checked; ``marker``
    is the dataset's not-heard value (UJIIndoorLoc's 100) or None."""
    floor = float(representation.floor_dbm)
    if as_text:
        cells = frame[features].to_numpy()
        dbm = _parse_cells(path, cells, cells != "", features, floor, first_line)
    else:
        dbm, cells = frame[features].to_numpy(dtype=np.float64), None
    is_marker = dbm == float(marker) if marker is not None else np.zeros(dbm.shape, dtype=bool)
    bad = ~np.isfinite(dbm) | ((dbm > 0) & ~is_marker)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        cell = cells[row, col] if cells is not None else format(float(dbm[row, col]), "g")
        raise DataError(f"{path}: line {first_line + row}, column {features[col]}: {shown(cell, 40)} is not an RSSI "
                        f"in dBm (at most 0{f', or {marker} for not heard' if marker is not None else ''})")
    dbm[is_marker] = floor  # a reading at or below the floor is not heard too: the representation says so
    inputs, _ = representation.apply(dbm)
    return frame.drop(columns=features), inputs


def _read_csv(path: Path, **options):
    """``pandas.read_csv`` with text kept as written (no "NA" guessing); errors name the file."""
    return next(_csv_chunks(path, None, **options))


def _csv_chunks(path: Path, chunk_rows: int | None, **options):
    """:func:`_read_csv` in frames of ``chunk_rows`` rows (None: one frame of the whole file)."""
    import pandas as pd

    try:
        if chunk_rows is None:
            yield pd.read_csv(path, keep_default_na=False, **options)
            return
        with pd.read_csv(path, keep_default_na=False, chunksize=chunk_rows, **options) as reader:
            yield from reader
    except FileNotFoundError:
        raise DataError(f"{path}: not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, expected a CSV file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({shown(exc, 120)})") from None


def _parse_cells(path, cells, filled, features, floor, first_line: int = 2) -> np.ndarray:
    """Cell by cell, to name the first that is not a number (``first_line``: the file line of row 0)."""
    dbm = np.full(cells.shape, floor, dtype=np.float64)
    for row, col in np.argwhere(filled):
        try:
            dbm[row, col] = float(cells[row, col])
        except ValueError:
            raise DataError(f"{path}: line {first_line + row}, column {features[col]}: "
                            f"{shown(cells[row, col], 40)} is not a number") from None
    return dbm


def stream_slices(streams: np.ndarray) -> list[np.ndarray]:
    """Row indices of each stream, streams in order of first appearance, rows in file order."""
    _, first, inverse = np.unique(streams, return_index=True, return_inverse=True)
    return [np.flatnonzero(inverse == group) for group in np.argsort(first)]


def covering_window_starts(n: int, steps: int) -> list[int]:
    """Starts of the windows that cover ``n`` rows: one after the other, the last ending at ``n``."""
    starts = list(range(0, n - steps + 1, steps))
    if starts[-1] + steps < n:
        starts.append(n - steps)
    return starts


def predict_rooms(model: Path, meta: dict, inputs: np.ndarray, streams: np.ndarray, runtime: str = "tflm",
                  method: str = "viterbi", lag: int = 10, reset_every: int | None = None,
                  progress: bool = False, where: str = "the recording") -> np.ndarray:
    """Class index per row of the model inputs ``inputs [n, F]`` (:func:`read_recording`; rows
    grouped by ``streams``) for the ``.tflite`` ``model`` whose metadata is ``meta``; see the module
    doc. ``where`` names the recording in errors."""
    from tinyloc_tf.deployment.host import predict_paths

    kind = model_kind(meta)
    rooms = np.empty(len(inputs), dtype=np.int64)
    if kind == "per scan":
        paths, _ = predict_paths(model, inputs[:, None, :], runtime=runtime, progress=progress)
        return paths[:, 0].astype(np.int64)
    slices = stream_slices(streams)
    if kind == "windows":
        steps = int(meta["T"])
        short = [(streams[rows[0]], len(rows)) for rows in slices if len(rows) < steps]
        if short:
            stream = "" if len(slices) == 1 else f" stream {shown(short[0][0], 40)}"
            raise DataError(f"{where}:{stream} {short[0][1]} rows, but {model} reads windows of {steps} rows")
        windows, owners = [], []
        for rows in slices:
            for start in covering_window_starts(len(rows), steps):
                windows.append(inputs[rows[start : start + steps]])
                owners.append(rows[start : start + steps])
        paths, _ = predict_paths(model, np.stack(windows), runtime=runtime, progress=progress)
        done = np.zeros(len(inputs), dtype=bool)
        for rows, path in zip(owners, paths):  # a row keeps the room of the first window holding it
            new = ~done[rows]
            rooms[rows[new]] = path[new]
            done[rows] = True
        return rooms
    if runtime != "tflm":
        raise TinylocError(f"{model} is a streaming step model: it runs in host TFLM only; drop --runtime")
    from tinyloc_tf.decoding import decode_stream
    from tinyloc_tf.deployment.streaming import StreamRunner

    runner = StreamRunner(model)
    crf = meta["crf"]
    for rows in slices:
        _, emissions = runner.run(inputs[rows], reset_every=reset_every)
        rooms[rows] = decode_stream(emissions, np.asarray(crf["transitions"], np.float32),
                                    np.asarray(crf["start"], np.float32), method, lag)
    return rooms


def streaming_decoding(card: dict | None, decoder: str | None, lag: int | None, reset_every: int | None,
                       card_name: str = "the model card") -> dict:
    """How a streaming model's samples are decoded: ``{"settings": predict_rooms' method, lag and
    reset_every, "from": where they came from}``. Each one not given is the model card's
    ``model.streaming`` (``card``: the card beside the ``.tflite``, or None), else Viterbi, lag 10,
    never reset; ``reset_every`` 0 is never."""
    scored = ((card or {}).get("model") or {}).get("streaming") or {}
    settings = {
        "method": decoder or scored.get("decoder") or "viterbi",
        "lag": int(lag if lag is not None else scored.get("lag", 10)),
        "reset_every": (reset_every if reset_every is not None else scored.get("reset_every")) or None,
    }
    from_card = bool(scored) and None in (decoder, lag, reset_every)
    return {"settings": settings, "from": f"{card_name} and the flags" if from_card else "the flags and defaults"}


def read_truth(other, column: str, classes: list[str], where: str) -> tuple[np.ndarray, np.ndarray]:
    """``(rows with a true class [n] bool, their class indices)`` from the class names in
    ``other[column]`` (empty: unknown); checked before any inference."""
    if column not in other.columns:
        raise DataError(f"{where}: no column {column!r} (--truth-column)")
    truth = other[column].fillna("").astype(str).to_numpy()
    given = truth != ""
    unknown = sorted(set(truth[given]) - set(classes))
    if unknown:
        raise DataError(f"{where}: column {column!r} holds {', '.join(map(repr, unknown[:3]))}, not among the "
                        f"model's classes ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''})")
    if not given.any():
        raise DataError(f"{where}: column {column!r} is empty on every row")
    index = {name: k for k, name in enumerate(classes)}
    return given, np.array([index[name] for name in truth[given]], dtype=np.int64)


def score_rooms(given: np.ndarray, truth: np.ndarray, rooms: np.ndarray) -> dict:
    """Accuracy and macro-F1 of ``rooms`` on the rows with a true class, as ``evaluate`` computes them."""
    from tinyloc_tf.training.metrics import accuracy, macro_f1

    return {"rows": int(given.sum()), "accuracy": accuracy(truth[None], rooms[given][None]),
            "macro_f1": macro_f1(truth[None], rooms[given][None])}


def write_predictions(out: Path, other, classes: list[str], rooms: np.ndarray) -> None:
    """The input's non-feature columns, then :data:`ROOM_COLUMN`, as CSV, atomically."""
    from tinyloc_tf.atomic import write_atomic

    if ROOM_COLUMN in other.columns:
        other = other.rename(columns={ROOM_COLUMN: f"{ROOM_COLUMN}_given"})
    table = other.assign(**{ROOM_COLUMN: np.asarray(classes, dtype=object)[rooms]})
    write_atomic(out, table.to_csv(index=False).encode())
