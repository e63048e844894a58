"""Keras model -> ``.tflite`` in five variants, names stripped, metadata embedded.

::

    buf = convert_model(tagger, quant="int8", representative=data.train.X, metadata={...})
    result = convert(tagger, quant="selective", representative=data.train.X)   # .tflite + .report

What is converted is ``tagger.encoder`` (``[1, T, F] -> [1, T, K]`` CRF emissions) wrapped
with a fixed batch of 1: a ``None`` batch adds SHAPE / REDUCE_PROD ops TFLM lacks. Viterbi
stays outside the graph; the CRF weights travel in the metadata (``metadata.py``).

Variants (registered in ``variants.py``), and what they stand for in the paper (``docs/compression.md``):

- ``float32``: no quantization (the paper's baseline).
- ``int8``: full-integer post-training quantization, per-channel weights, activations
  calibrated on a seeded subset of real training windows, int8 input and output,
  ``TFLITE_BUILTINS_INT8`` (the paper's "static" quantization).
- ``dynamic``: dynamic-range quantization, int8 weights and float activations (the paper's
  "dynamic"). Hybrid ops: LiteRT only, TFLM rejects them.
- ``selective``: the LLM.int8() analogue: int8 everywhere except ops whose quantization error
  is an outlier according to TFLite's quantization debugger (``rmse / scale`` of the op's
  output above a threshold, 0.7 by default as in TensorFlow's debugger guide; pure rounding
  noise gives 1/sqrt(12) = 0.29), plus ops TFLM only runs in float (EXP, LOG). Those are
  kept in float with the debugger's ``denylisted_nodes`` / ``denylisted_ops``.
- ``qat``: quantization-aware fine-tuning (``qat.py``) then ``int8``.
"""

from __future__ import annotations

import contextlib
import io
import re
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyloc_tf.compression.calibration import DEFAULT_REPRESENTATIVE_SIZE, representative_subset, trim_calibration
from tinyloc_tf.compression.variants import get_variant
from tinyloc_tf.errors import TinylocError


#: Ops TFLM has float kernels for but no int8 kernel ("exp.cc: INT8 != FLOAT32").
TFLM_FLOAT_ONLY_OPS = ("EXP", "LOG")
#: Converter-inserted boundaries of a float island; not float compute themselves.
BOUNDARY_OPS = ("QUANTIZE", "DEQUANTIZE")

DEFAULT_SELECTIVE_THRESHOLD = 0.7


@dataclass
class Conversion:
    """A converted model: the ``.tflite`` bytes and what happened on the way."""

    tflite: bytes
    report: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- inputs


def _window_shape(model, representative) -> tuple[int, int]:
    """``(T, F)`` of one input window, from the tagger's build config, the model or the data."""
    config = getattr(model, "build_config", None)
    if isinstance(config, dict) and "steps" in config and "features" in config:
        return int(config["steps"]), int(config["features"])
    shape = getattr(model, "input_shape", None) if hasattr(model, "inputs") else None
    if shape is not None and len(shape) == 3 and None not in shape[1:]:
        return int(shape[1]), int(shape[2])
    if representative is not None:
        X = np.asarray(representative)
        if X.ndim == 3:
            return int(X.shape[1]), int(X.shape[2])
    raise TinylocError("cannot tell the window shape [T, F]: pass representative windows [N, T, F]")


def deployable_graph(model, representative=None):
    """A Keras model ``[1, T, F] -> [1, T, K]`` ready for the converter.

    ``model`` is a ``SequenceTagger`` (its ``encoder`` is converted) or any Keras model /
    layer mapping ``[B, T, F]`` windows to ``[B, T, K]``.
    """
    import keras

    steps, features = _window_shape(model, representative)
    body = getattr(model, "encoder", model)
    inputs = keras.Input((steps, features), batch_size=1, name="windows")
    outputs = body(inputs, training=False)
    return keras.Model(inputs, outputs, name="tinyloc_graph")


# --------------------------------------------------------------------------- converter


@contextlib.contextmanager
def _quiet():
    """Send the converter's prints (Python and C level, fds 1 and 2) to a scratch file."""
    from tinyloc_tf.tf_log import output_to

    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(io.StringIO()):
        with output_to(Path(scratch) / "converter.log"):
            yield


def _converter(graph, windows: np.ndarray | None = None, *, optimize: bool = True, int8_io: bool = False,
               per_tensor_weights: bool = False):
    """A ``TFLiteConverter`` for ``graph``: float32 without ``optimize``; with it, int8 weights
    (one scale per output channel, or per tensor with ``per_tensor_weights``), and calibrated
    activations when ``windows`` are given; int8 ops and I/O with ``int8_io``."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(graph)
    if not optimize:
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    weights_per_tensor(converter, per_tensor_weights)
    if windows is not None:
        converter.representative_dataset = lambda: ([windows[i : i + 1]] for i in range(len(windows)))
    if int8_io:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter


def weights_per_tensor(converter, enabled: bool) -> None:
    """Quantize ``converter``'s weights with one scale per tensor when ``enabled``.

    TFLite's option for it is private (``_experimental_disable_per_channel``); the public API
    has none. Per-channel scales cost 4 bytes per output channel for the weights and 4 more for
    the bias, plus an 8-byte zero point per channel, in flash, and TFLM keeps a multiplier and a
    shift per channel in the arena: on a tiny model, a sixth of the file.
    """
    if enabled:
        converter._experimental_disable_per_channel = True


# The converters of the variants in ``variants.py``: (graph, windows, options) -> (bytes, report).


def convert_float32(graph, windows, options: dict) -> tuple[bytes, dict]:
    return _run_converter(_converter(graph, optimize=False).convert, "float32", graph), {}


def convert_dynamic(graph, windows, options: dict) -> tuple[bytes, dict]:
    raw = _run_converter(_converter(graph, per_tensor_weights=options.get("per_tensor_weights", False)).convert,
                         "dynamic", graph)
    if int8_weight_tensors(raw) == 0:
        return raw, {"note": "no weight tensor reached the converter's 1024-element minimum for "
                             "dynamic-range quantization: the model is float32"}
    return raw, {}


def convert_int8(graph, windows, options: dict) -> tuple[bytes, dict]:
    converter = _converter(graph, windows, int8_io=True, per_tensor_weights=options.get("per_tensor_weights", False))
    return _run_converter(converter.convert, "int8", graph), {}


def convert_selective(graph, windows, options: dict) -> tuple[bytes, dict]:
    threshold = options.get("selective_threshold", DEFAULT_SELECTIVE_THRESHOLD)
    raw, kept = _selective(graph, windows, threshold, options.get("per_tensor_weights", False))
    return raw, {"kept_float": kept, "selective_threshold": float(threshold)}


def _layer_names(graph) -> set[str]:
    return {layer.name for layer in graph._flatten_layers(include_self=False, recursive=True)}


def layer_path(scope: str, known: set[str]) -> str:
    """``"tinyloc_graph_1/encoder_1/block_0_1/mixer_1/Exp"`` -> ``"encoder/block_0/mixer"``.

    TF name scopes carry Keras layer names, with ``_1``-style suffixes added per call.
    """
    parts = []
    for part in scope.split("/")[:-1]:  # the last component is the op itself
        if part in known:
            parts.append(part)
        else:
            base = re.sub(r"_\d+$", "", part)
            if base in known:
                parts.append(base)
    return "/".join(parts) or scope


def _conversion_error(exc: Exception, quant: str, known: set[str]) -> TinylocError:
    """A one-paragraph error naming the op(s) and layer(s) that stopped the converter."""
    text = str(exc)
    blocked = []
    for line in text.splitlines():
        if "error:" not in line:
            continue
        ops = re.findall(r"'(?:tf|tfl)\.(\w+)' op", line)
        scopes = re.findall(r'"([^"]+?)@__inference', line)
        if ops:
            layer = layer_path(scopes[0], known) if scopes else "?"
            detail = line.split("):", 1)[-1].strip() if "):" in line else line.strip()
            blocked.append(f"op {ops[0]} in layer {layer} ({detail})")
    if not blocked:
        custom = re.findall(r"Custom ops: ([\w, ]+)", text)
        if custom:
            blocked.append(f"ops without a TFLite builtin: {custom[0]}")
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    summary = "; ".join(dict.fromkeys(blocked)) or first[:500]
    return TinylocError(f"{quant} conversion failed: {summary}")


def _run_converter(convert_fn, quant: str, graph):
    try:
        with _quiet():
            return convert_fn()
    except Exception as exc:  # the converter raises ConverterError, ValueError, RuntimeError...
        raise _conversion_error(exc, quant, _layer_names(graph)) from exc


# --------------------------------------------------------------------------- flatbuffer inspection


def op_table(model) -> list[dict]:
    """Every operator of the main subgraph: ``{"op", "inputs", "outputs"}`` (tensor type names)."""
    from tinyloc_tf.compression.flatbuffer import indices, read_model

    fb = read_model(model)

    def types(vector):
        return [fb.type_name(fb.tensors[i]) for i in indices(vector) if i >= 0]

    return [{"op": fb.op_name(op), "inputs": types(op.inputs), "outputs": types(op.outputs)} for op in fb.operators]


def op_counts(model) -> dict[str, int]:
    """``{op name: count}`` of the main subgraph."""
    return dict(sorted(Counter(row["op"] for row in op_table(model)).items()))


def float_ops(model) -> dict[str, int]:
    """Compute ops that read or write float32 tensors (QUANTIZE / DEQUANTIZE excluded).

    Empty for a fully integer model. A hybrid (dynamic-range) op counts: it computes in float.
    """
    counts = Counter(
        row["op"]
        for row in op_table(model)
        if row["op"] not in BOUNDARY_OPS and "FLOAT32" in row["inputs"] + row["outputs"]
    )
    return dict(sorted(counts.items()))


def int8_weight_tensors(model) -> int:
    """Number of constant int8 tensors (quantized weights) in the main subgraph."""
    from tinyloc_tf.compression.flatbuffer import read_model

    fb = read_model(model)
    return sum(1 for tensor in fb.tensors if fb.type_name(tensor) == "INT8" and fb.tensor_data(tensor) is not None)


# --------------------------------------------------------------------------- finishing


#: Metadata entries TFLite's converter writes (its version requirement and conversion options):
#: no runtime reads them, and they take about 220 bytes of every file.
CONVERTER_METADATA = ("min_runtime_version", "CONVERSION_METADATA")


def finalize(buf: bytes, metadata: dict | None, strip: bool = True) -> bytes:
    """Strip what no runtime reads and embed ``metadata`` as the "tinyloc" entry.

    Stripped: tensor / subgraph / signature names (most of a tiny model's bytes; inputs and
    outputs are used by index), removed by TFLite's own ``flatbuffer_utils.strip_strings``, the
    converter's metadata entries (:data:`CONVERTER_METADATA`), and the float ``min`` / ``max``
    calibration ranges TFLite's 16x8 quantizer leaves in every tensor's quantization (about 2.5 KB
    of an int16x8 step model): kernels read only the scales and zero points. A per-channel
    FULLY_CONNECTED bias keeps one scale
    (:func:`~tinyloc_tf.compression.flatbuffer.per_tensor_bias_quantization`: no kernel reads
    the others; LiteRT's XNNPACK wants every scale of a convolution's bias, so those stay).
    """
    from tensorflow.lite.tools import flatbuffer_utils

    from tinyloc_tf.compression.flatbuffer import decode_name, pack_model, per_tensor_bias_quantization, unpack_model
    from tinyloc_tf.compression.metadata import set_payload

    model_object = unpack_model(buf)
    if strip:
        flatbuffer_utils.strip_strings(model_object)
        model_object.metadata = [e for e in model_object.metadata or [] if decode_name(e.name) not in CONVERTER_METADATA]
        for graph in model_object.subgraphs:
            for tensor in graph.tensors:
                if tensor.quantization is not None:
                    tensor.quantization.min = tensor.quantization.max = None
        per_tensor_bias_quantization(model_object, operators=("FULLY_CONNECTED",))
    if metadata is not None:
        set_payload(model_object, metadata)
    return pack_model(model_object)


def model_metadata(model) -> dict:
    """What a ``SequenceTagger`` itself contributes to the metadata (architecture, CRF, params)."""
    meta = {}
    config = getattr(model, "build_config", None)
    if isinstance(config, dict):
        meta.update(
            family=config.get("family"),
            hidden=config.get("hidden"),
            layers=config.get("layers"),
            T=config.get("steps"),
            int8_friendly=config.get("int8_friendly"),
        )
    crf = getattr(model, "crf", None)
    if crf is not None and hasattr(crf, "transitions"):
        # Float16: half the flash of the CRF (UJIIndoorLoc's 59 x 59 transitions: 14 KB -> 7 KB).
        # Each weight moves by at most 2^-11 of its size; the host and the firmware both decode
        # with the rounded values (what it changes in decoded paths: docs/compression.md).
        meta["crf"] = {name: np.asarray(getattr(crf, name), dtype=np.float32).astype(np.float16)
                       for name in ("transitions", "start", "end")}
        if meta.get("T") == 1:
            # A one-step path never takes a transition: Viterbi uses start + emissions + end
            # only. Zeros compress to nothing, where UJIIndoorLoc's 59 x 59 untrained random
            # transitions would add 13 KB of flash.
            meta["crf"]["transitions"] = np.zeros_like(meta["crf"]["transitions"])
            meta["crf"]["transitions_zeroed"] = "T = 1: transitions never enter a path score"
    if hasattr(model, "count_params"):
        meta["params"] = int(model.count_params())
    return meta


def _numeric_array(value):
    """Lists of numbers become float32 arrays (stored compactly); anything else stays."""
    if isinstance(value, (list, tuple)) and value and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        return np.asarray(value, dtype=np.float32)
    return value


#: ``meta.json`` scaling fields that describe the data rather than rebuild the representation
#: (``Representation.from_meta`` reads neither): left out of the model's flash.
SCALING_NOTES = ("formula", "constant_in_train")


def data_metadata(dataset) -> dict:
    """What a ``PreparedDataset`` contributes: feature and class names, T, scaling, provenance.

    Provenance is the data's and its source's sha256 and the source's file name; the folder it
    lay in on the converting machine stays out of the file.
    """
    meta = dataset.meta
    source = meta.get("source")
    return {
        "features": list(meta["features"]),
        "classes": list(meta["classes"]),
        "T": int(meta["T"]),
        "scaling": {key: _numeric_array(value) for key, value in meta["scaling"].items() if key not in SCALING_NOTES},
        "labels": meta.get("labels"),
        "source": Path(str(source)).name if source else source,
        "source_sha256": meta.get("source_sha256"),
        "data_sha256": dataset.fingerprint(),
    }


# --------------------------------------------------------------------------- variants


def _selective(graph, windows: np.ndarray, threshold: float, per_tensor_weights: bool = False) -> tuple[bytes, list[dict]]:
    """int8 with the debugger's outlier ops (and TFLM float-only ops) kept in float."""
    import pandas as pd
    import tensorflow as tf
    from tensorflow.lite.python import convert as tflite_convert

    known = _layer_names(graph)

    def dataset():
        return ([windows[i : i + 1]] for i in range(len(windows)))

    def debug():
        converter = _converter(graph, windows, per_tensor_weights=per_tensor_weights)
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=dataset)
        debugger.run()
        dump = io.StringIO()
        debugger.layer_statistics_dump(dump)
        return debugger, dump.getvalue()

    debugger, dump = _run_converter(debug, "selective", graph)
    stats = pd.read_csv(io.StringIO(dump))
    # Rounding noise alone gives rmse/scale = 1/sqrt(12) = 0.29; far above that is an outlier.
    stats["rmse_over_scale"] = np.sqrt(stats["mean_squared_error"]) / stats["scale"].where(stats["scale"] > 0)
    outliers = stats[stats["rmse_over_scale"] > threshold]
    denylisted_ops = [op for op in TFLM_FLOAT_ONLY_OPS if op in set(stats["op_name"])]
    kept = [
        {
            "op": row.op_name,
            "layer": layer_path(str(row.tensor_name).split(";")[0], known),
            "rmse_over_scale": round(float(row.rmse_over_scale), 4),
            "reason": "quantization error outlier",
        }
        for row in outliers.itertuples()
        if row.op_name not in denylisted_ops
    ]
    kept += [{"op": op, "layer": "*", "rmse_over_scale": None, "reason": "no int8 kernel in TFLM"} for op in denylisted_ops]

    def quantize():
        return tflite_convert.mlir_quantize(
            debugger.calibrated_model,
            disable_per_channel=per_tensor_weights,
            fully_quantize=True,
            input_data_type=tf.int8,
            output_data_type=tf.int8,
            denylisted_ops=denylisted_ops or None,
            denylisted_nodes=list(outliers["tensor_name"]) or None,
        )

    return _run_converter(quantize, "selective", graph), kept


def file_report(buf: bytes) -> dict:
    """What a finished ``.tflite`` holds: its size, its metadata's share, its ops, the ops
    left in float and the int8 weight tensors."""
    from tinyloc_tf.compression.metadata import metadata_bytes

    return {"bytes": len(buf), "metadata_bytes": metadata_bytes(buf), "ops": op_counts(buf),
            "float_ops": float_ops(buf), "int8_weight_tensors": int8_weight_tensors(buf)}


def convert(
    model,
    quant: str = "int8",
    representative=None,
    metadata: dict | None = None,
    *,
    labels=None,
    validation=None,
    representative_size: int = DEFAULT_REPRESENTATIVE_SIZE,
    seed: int = 0,
    selective_threshold: float = DEFAULT_SELECTIVE_THRESHOLD,
    qat_options: dict | None = None,
    calibration_trim: float = 0.0,
    per_tensor_weights: bool = False,
    strip: bool = True,
) -> Conversion:
    """Convert ``model`` to a ``.tflite`` in variant ``quant`` (see the module docstring).

    Args:
        model: ``SequenceTagger`` (its encoder is converted) or a Keras model/layer over
            ``[B, T, F]`` windows.
        quant: a registered variant (``variants.py``).
        representative: real training windows ``[N, T, F]`` (int8, selective, qat); a seeded
            subset of ``representative_size`` windows calibrates the activations.
        metadata: extra fields for the embedded metadata (e.g. :func:`data_metadata`).
        labels: training labels ``[N, T]`` for ``qat`` (paired with ``representative``).
        validation: ``(X_val, y_val)`` for ``qat``'s choice of epoch.
        qat_options: keyword arguments for :func:`tinyloc_tf.compression.qat.fine_tune`.
        calibration_trim: percent of the representative windows to leave out of calibration,
            those whose emissions reach the largest magnitude (:func:`trim_calibration`).
        per_tensor_weights: one int8 scale per weight tensor (:func:`weights_per_tensor`).

    Returns:
        :class:`Conversion` with the bytes (names stripped, metadata embedded) and a report:
        ``ops``, ``float_ops``, ``kept_float`` (selective), ``qat`` (history), sizes.
    """
    variant = get_variant(quant)
    if variant.streaming:
        raise TinylocError(f"{quant} is a streaming step model: convert it with "
                           f"compression.streaming.convert_streaming (tinyloc convert RUN --streaming --quant {variant.streaming})")
    if variant.calibrated and representative is None:
        raise TinylocError(f"{quant} conversion needs representative training windows [N, T, F]")
    report: dict = {"quant": quant}

    prepare = variant.prepare_function()
    if prepare is not None:
        model, report[quant] = prepare(model, representative, labels, validation=validation, seed=seed,
                                       options=qat_options or {})

    windows = None
    if variant.calibrated:
        pool = trim_calibration(model, representative, calibration_trim)
        windows = representative_subset(pool, representative_size, seed)
        report["representative"] = {"windows": int(len(windows)), "seed": int(seed)}
        if calibration_trim:
            report["representative"]["trimmed_percent"] = float(calibration_trim)

    graph = deployable_graph(model, windows if windows is not None else representative)
    steps, features = graph.input_shape[1], graph.input_shape[2]
    if windows is not None and tuple(windows.shape[1:]) != (steps, features):
        raise TinylocError(
            f"representative windows are [N, {windows.shape[1]}, {windows.shape[2]}], the model takes [N, {steps}, {features}]"
        )

    raw, extra = variant.convert_function()(graph, windows, {"selective_threshold": selective_threshold,
                                                             "per_tensor_weights": per_tensor_weights})
    report.update(extra)
    if per_tensor_weights and quant != "float32":
        report["weights"] = "per-tensor"

    report["bytes_with_names"] = len(raw)
    payload = {**model_metadata(model), **(metadata or {}), "quant": quant}
    for key in ("kept_float", "selective_threshold", "representative", "weights"):
        if key in report:
            payload[key] = report[key]
    if variant.prepare:  # what the preparation did, without its per-epoch history
        payload[quant] = {k: v for k, v in report[quant].items() if k != "history"}
    buf = finalize(raw, payload, strip=strip)
    report.update(file_report(buf))
    if variant.int8_io:
        _check_int8_io(buf, quant)
    return Conversion(buf, report)


def _check_int8_io(buf: bytes, quant: str) -> None:
    """A full-integer conversion must take and give int8 tensors; a converter that quietly fell
    back to float (no calibration data reached it) must not produce a file labelled int8."""
    from tinyloc_tf.compression.flatbuffer import read_model

    fb = read_model(buf)
    for kind, tensor_indices in (("input", fb.inputs), ("output", fb.outputs)):
        for index in tensor_indices:
            tensor_type = fb.type_name(fb.tensors[index])
            if tensor_type != "INT8":
                raise TinylocError(
                    f"the {quant} conversion produced a {tensor_type} model {kind}, "
                    "not int8; calibration did not take effect"
                )


def convert_model(model, quant: str = "int8", representative=None, metadata: dict | None = None, **options) -> bytes:
    """:func:`convert`, returning only the ``.tflite`` bytes."""
    return convert(model, quant, representative, metadata, **options).tflite
