"""Metadata carried inside a ``.tflite``: everything needed to use a model without its run folder.

A TFLite flatbuffer has a ``metadata`` table of named buffers (TFLite's own converter puts
``min_runtime_version`` and ``CONVERSION_METADATA`` there; ``tinyloc convert`` drops those, no
runtime reads them). We add two entries:

- ``"tinyloc"``: zlib-compressed UTF-8 JSON::

    {
      "format": "tinyloc-tflite/1",
      "features": ["WAP001", ...],          # input feature order, F names
      "classes": ["kitchen", ...],          # class index -> name, K names
      "T": 20,                              # window length
      "scaling": {"min": <array>, "max": <array>},   # min-max scaling per feature (raw RSSI -> [0, 1])
      "crf": {"transitions": <array>, "start": <array>, "end": <array>},   # for Viterbi
      "quant": "int8",                      # float32 | int8 | dynamic | selective | qat
      "family": "mamba", "hidden": 8, "layers": 1, "int8_friendly": true, "params": 1432,
      "data_sha256": "...", "source_sha256": "...", ...,
      "arrays": {"crf.transitions": {"offset": 0, "shape": [K, K], "dtype": "<f2"}, ...}
    }

- ``"tinyloc.arrays"``: the numpy arrays of the payload (CRF weights, scaling), zlib-compressed,
  at the (uncompressed) byte offsets ``arrays`` gives. Each array is stored little-endian in
  the smallest of int8, int16, float16 and float32 that holds its values exactly (the index
  names the type as ``"dtype"`` when it is not float32): integer dBm bounds take a byte,
  float16 CRF weights (:func:`~tinyloc_tf.compression.convert.model_metadata`) two.
  :func:`read_metadata` puts them back (as lists of floats) where they were.

Compact because the file is what goes to flash: for UJIIndoorLoc (520 features, 59 classes)
JSON text would take about 50 KB, raw float32 plus JSON 25 KB, compressed 15 KB (most of it
the 59 x 59 CRF transitions, which the device needs for Viterbi anyway), and 8 KB with the
CRF in float16.

TFLM and LiteRT ignore metadata entries they do not know, so the model runs unchanged. The
flatbuffer itself is read, edited and written by :mod:`tinyloc_tf.compression.flatbuffer`.
"""

from __future__ import annotations

import json
import re
import zlib
from pathlib import Path

import numpy as np

from tinyloc_tf.compression.flatbuffer import decode_name, pack_model, read_model, tflite_schema
from tinyloc_tf.errors import TinylocError

METADATA_NAME = "tinyloc"
ARRAYS_NAME = "tinyloc.arrays"
FORMAT = "tinyloc-tflite/1"


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"metadata value of type {type(value).__name__} is not JSON-serialisable: {value!r}")


#: Types an array may be stored in, smallest first; float32 is the default (no ``"dtype"``).
STORAGE_DTYPES = ("<i1", "<i2", "<f2", "<f4")
DEFAULT_STORAGE_DTYPE = "<f4"


def storage_dtype(value: np.ndarray) -> str:
    """The smallest of :data:`STORAGE_DTYPES` that holds every value of ``value`` exactly
    (float32 for anything float16 would round: float32 is the format's precision)."""
    wide = np.asarray(value, dtype=np.float64)
    for dtype in STORAGE_DTYPES[:-1]:
        kind = np.dtype(dtype)
        if kind.kind == "i":
            info = np.iinfo(kind)
            if not np.all(np.isfinite(wide) & (wide >= info.min) & (wide <= info.max)):
                continue
        with np.errstate(over="ignore"):
            if np.array_equal(wide.astype(kind).astype(np.float64), wide, equal_nan=True):
                return dtype
    return DEFAULT_STORAGE_DTYPE


def encode_payload(payload: dict) -> tuple[bytes, bytes]:
    """``payload`` -> ``(compressed JSON, compressed array blob)``.

    Every numpy array in ``payload`` (at any depth of nested dicts) goes to the blob in its
    :func:`storage_dtype` (little-endian) and is listed under ``"arrays"`` by its dotted path;
    the rest is compact JSON (numpy scalars become numbers).
    """
    if not isinstance(payload, dict):
        raise TinylocError(f"metadata must be a dict, got {type(payload).__name__}")
    blob = bytearray()
    index = {}

    def lift(node, prefix):
        out = {}
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, np.ndarray) and value.dtype.kind in "fiu":
                dtype = storage_dtype(value)
                index[path] = {"offset": len(blob), "shape": list(value.shape)}
                if dtype != DEFAULT_STORAGE_DTYPE:
                    index[path]["dtype"] = dtype
                blob.extend(np.ascontiguousarray(value, dtype=dtype).tobytes())
            elif isinstance(value, dict):
                inner = lift(value, f"{path}.")
                if inner or not value:  # a dict of arrays only is rebuilt from "arrays"
                    out[key] = inner
            else:
                out[key] = value
        return out

    document = {"format": FORMAT, **lift(payload, "")}
    if index:
        document["arrays"] = index
    return _document_text(document), zlib.compress(bytes(blob), 9)


def _document_text(document: dict) -> bytes:
    """The compressed JSON of a metadata document (arrays already lifted out)."""
    def compressed(doc):
        try:
            text = json.dumps(doc, default=_json_default, separators=(",", ":"), sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise TinylocError(f"metadata cannot be stored as JSON: {exc}") from exc
        return zlib.compress(text.encode("utf-8"), 9)

    plain = compressed(document)
    runs = {key: run for key, value in document.items() if (run := numbered_run(value)) is not None}
    if not runs:
        return plain
    # "WAP001" ... "WAP520": 5 KB of JSON that zlib only halves, stored as their rule.
    ruled = {key: value for key, value in document.items() if key not in runs}
    ruled["numbered_names"] = {**document.get("numbered_names", {}), **runs}
    ruled = compressed(ruled)
    return ruled if len(ruled) < len(plain) else plain


def repack(buf: bytes, where: str = "model") -> bytes:
    """``buf`` written again by today's :func:`pack_model` and metadata encoding.

    The graph, every constant and every metadata value stay as they are (the arrays blob is
    kept byte for byte); only the layout of the file changes. For files converted before the
    packer shared tables and empty buffers, or before numbered names were stored as a rule.
    """
    fb = read_model(buf, where)
    text = fb.metadata().get(METADATA_NAME)
    if text is not None:
        set_metadata_entry(fb.model, METADATA_NAME, _document_text(_parse_document(text, where)))
    return pack_model(fb.model)


def _parse_document(text: bytes, where: str) -> dict:
    """The JSON document of a compressed ``"tinyloc"`` entry, as stored (rules and array index
    not expanded)."""
    try:
        return json.loads(zlib.decompress(text).decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TinylocError(f"{where}: {METADATA_NAME!r} metadata is not valid JSON ({exc})") from exc


def _expand_run(run: dict) -> list[str]:
    """The names a :func:`numbered_run` rule stands for."""
    first, digits = int(run["first"]), int(run["digits"])
    return [f"{run['prefix']}{i:0{digits}d}" for i in range(first, first + int(run["count"]))]


def numbered_run(value) -> dict | None:
    """``{"prefix", "digits", "first", "count"}`` when ``value`` is a list of at least two names
    ``prefix + i`` for consecutive ``i`` zero-padded to ``digits``, else None."""
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, str) for v in value):
        return None
    match = re.fullmatch(r"(.*?)(\d+)", value[0])
    if match is None:
        return None
    run = {"prefix": match.group(1), "digits": len(match.group(2)), "first": int(match.group(2)), "count": len(value)}
    return run if _expand_run(run) == value else None


def decode_payload(text: bytes, blob: bytes, where: str = "model") -> dict:
    """Inverse of :func:`encode_payload`: arrays come back as (nested) lists of floats."""
    document = _parse_document(text, where)
    try:
        blob = zlib.decompress(blob) if blob else b""
    except zlib.error as exc:
        raise TinylocError(f"{where}: {METADATA_NAME!r} metadata is not valid JSON ({exc})") from exc
    if document.get("format") != FORMAT:
        raise TinylocError(f"{where}: unknown metadata format {document.get('format')!r}, expected {FORMAT!r}")
    for key, run in (document.pop("numbered_names", None) or {}).items():
        try:
            document[key] = _expand_run(run)
        except (KeyError, TypeError, ValueError) as exc:
            raise TinylocError(f"{where}: metadata entry numbered_names.{key} is malformed ({exc!r})") from exc
    for path, spec in (document.pop("arrays", None) or {}).items():
        shape = tuple(int(s) for s in spec["shape"])
        count = int(np.prod(shape)) if shape else 1
        start = int(spec["offset"])
        dtype = spec.get("dtype", DEFAULT_STORAGE_DTYPE)
        if dtype not in STORAGE_DTYPES:
            raise TinylocError(f"{where}: metadata array {path!r} has an unknown dtype {dtype!r} "
                               f"(expected one of {', '.join(STORAGE_DTYPES)})")
        if start + np.dtype(dtype).itemsize * count > len(blob):
            raise TinylocError(f"{where}: metadata array {path!r} lies outside the {ARRAYS_NAME!r} buffer")
        values = np.frombuffer(blob, dtype=dtype, count=count, offset=start).reshape(shape)
        *parents, leaf = path.split(".")
        node = document
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = values.astype(np.float64).tolist()
    return document


def set_metadata_entry(model_object, name: str, data: bytes) -> None:
    """Add (or replace) the metadata entry ``name`` of a ``ModelT`` with ``data``."""
    schema = tflite_schema()
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8).copy()
    for entry in model_object.metadata or []:
        if decode_name(entry.name) == name:
            model_object.buffers[entry.buffer] = buffer
            return
    model_object.buffers = list(model_object.buffers or [])
    model_object.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model_object.buffers) - 1
    model_object.metadata = list(model_object.metadata or [])
    model_object.metadata.append(entry)


def drop_payload(model_object) -> int:
    """Remove the "tinyloc" / "tinyloc.arrays" entries of a ``ModelT`` in place (their buffers
    emptied, so packing drops them); returns the payload bytes removed. For a copy that only a
    runtime reads: the firmware's, whose CRF, classes and input table are C arrays of their own."""
    kept, removed = [], 0
    for entry in model_object.metadata or []:
        if decode_name(entry.name) in (METADATA_NAME, ARRAYS_NAME):
            buffer = model_object.buffers[entry.buffer]
            removed += 0 if buffer.data is None else len(buffer.data)
            model_object.buffers[entry.buffer] = tflite_schema().BufferT()
        else:
            kept.append(entry)
    model_object.metadata = kept or None
    return removed


def write_metadata(buf: bytes, payload: dict) -> bytes:
    """Return ``buf`` with ``payload`` stored as the ``"tinyloc"`` metadata entry (replacing any)."""
    model_object = read_model(buf).model
    set_payload(model_object, payload)
    return pack_model(model_object)


def set_payload(model_object, payload: dict) -> None:
    """Store ``payload`` in a ``ModelT`` as the "tinyloc" / "tinyloc.arrays" entries."""
    text, blob = encode_payload(payload)
    set_metadata_entry(model_object, METADATA_NAME, text)
    set_metadata_entry(model_object, ARRAYS_NAME, blob)


def metadata_entries(model) -> dict[str, bytes]:
    """Every metadata entry of a ``.tflite`` (bytes or path) as ``{name: raw bytes}``."""
    return read_model(model).metadata()


def read_metadata(model) -> dict:
    """The ``"tinyloc"`` metadata dict of a ``.tflite`` (bytes or path).

    Raises ``TinylocError`` when the model carries none (it was not made by ``tinyloc convert``).
    """
    return metadata_of(read_model(model, "model"))


def metadata_of(fb) -> dict:
    """:func:`read_metadata` of an already parsed model (a ``flatbuffer.Flatbuffer``); errors
    name its ``where``."""
    where = fb.where
    entries = fb.metadata()
    if METADATA_NAME not in entries:
        raise TinylocError(
            f"{where}: no {METADATA_NAME!r} metadata (found: {', '.join(sorted(entries)) or 'none'}); "
            "convert the model with `tinyloc convert` to embed it"
        )
    return decode_payload(entries[METADATA_NAME], entries.get(ARRAYS_NAME, b""), where)


def metadata_bytes(model) -> int:
    """Bytes the tinyloc metadata entries occupy (payloads only, not flatbuffer bookkeeping)."""
    entries = metadata_entries(model)
    return sum(len(entries.get(name, b"")) for name in (METADATA_NAME, ARRAYS_NAME))
