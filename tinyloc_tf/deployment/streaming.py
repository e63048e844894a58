"""Streaming step models in host TFLM: whole sessions, one sample per invoke.

::

    runner = StreamRunner("m_stream.tflite")           # TFLM, state buffers of its own
    emissions_q, emissions = runner.run(X)             # X float [n, F] -> int8 / float [n, K]
    report = evaluate_streaming("m_stream.tflite", "data/house", split="test")

The runner keeps the int8 state exactly as the firmware does: zeros (the state inputs' zero
points) before the first sample, then each state output copied byte for byte to its input
(:mod:`tinyloc_tf.compression.streaming` gives outputs the inputs' quantization).

``evaluate_streaming`` rebuilds the split's continuous streams from its windows
(:mod:`tinyloc_tf.data.streams`), runs each from a zero state and decodes online with every
decoder asked for (forward filtering, fixed-lag Viterbi for each lag), scoring all samples.
"""

from __future__ import annotations

import numpy as np

from tinyloc_tf.errors import TinylocError

DEFAULT_LAGS = (0, 5, 10, 20)


class StreamRunner:
    """Host TFLM (tflite-micro wheel) running a step ``.tflite`` sample by sample."""

    def __init__(self, model, arena_bytes: int | None = None):
        from tinyloc_tf.compression.streaming import streaming_layout
        from tinyloc_tf.deployment.host import DEFAULT_ARENA_BYTES, _io_from_details, _qp, _TFLMRunner, model_bytes

        self.buf = model_bytes(model)
        self.layout = streaming_layout(self.buf)
        base = _TFLMRunner(self.buf, arena_bytes or DEFAULT_ARENA_BYTES)
        self.interpreter = base.interpreter
        n = len(self.layout["inputs"])
        self.inputs = [_io_from_details(d["shape"], d["dtype"], *_qp(d))
                       for d in (self.interpreter.get_input_details(i) for i in range(n))]
        self.outputs = [_io_from_details(d["shape"], d["dtype"], *_qp(d))
                        for d in (self.interpreter.get_output_details(i) for i in range(n))]
        for i, (a, b) in enumerate(zip(self.inputs[1:], self.outputs[1:]), start=1):
            if (a.shape, a.dtype, a.scale, a.zero_point) != (b.shape, b.dtype, b.scale, b.zero_point):
                raise TinylocError(f"state output {i} is not quantized like its input "
                                   f"({b.scale}, {b.zero_point} vs {a.scale}, {a.zero_point}); reconvert the model")
        self.reset()

    def reset(self) -> None:
        """Zero state (each state input's zero point)."""
        from tinyloc_tf.deployment.host import quantize

        self.state = [quantize(np.zeros(io.shape, np.float32), io) for io in self.inputs[1:]]

    def step(self, sample_q: np.ndarray) -> np.ndarray:
        """One quantized sample ``[1, F]`` -> raw emission ``[1, K]``; the state advances."""
        self.interpreter.set_input(np.reshape(sample_q, self.inputs[0].shape), 0)
        for i, value in enumerate(self.state, start=1):
            self.interpreter.set_input(value, i)
        self.interpreter.invoke()
        self.state = [np.array(self.interpreter.get_output(i)) for i in range(1, len(self.outputs))]
        return np.array(self.interpreter.get_output(0)).reshape(1, -1)

    def run(self, X, reset_every: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """A whole stream from a zero state: ``X`` float ``[n, F]`` -> (raw ``[n, K]``, float ``[n, K]``).

        ``reset_every``: the state goes back to zero before every ``reset_every``-th sample
        (samples ``N, 2N, ...``), as the firmware does with ``deploy --reset-every``.
        """
        from tinyloc_tf.deployment.host import dequantize, quantize

        X = np.asarray(X, dtype=np.float32)
        features = self.inputs[0].shape[-1]
        if X.ndim != 2 or X.shape[1] != features:
            raise TinylocError(f"a stream must be [n, {features}] samples, got shape {X.shape}")
        check_reset_every(reset_every)
        self.reset()
        raw = np.empty((len(X), self.outputs[0].shape[-1]), dtype=self.outputs[0].dtype)
        for t in range(len(X)):
            if reset_every and t and t % reset_every == 0:
                self.reset()
            raw[t] = self.step(quantize(X[t : t + 1], self.inputs[0]))[0]
        return raw, dequantize(raw, self.outputs[0])


def check_reset_every(reset_every: int | None) -> None:
    if reset_every is not None and (not isinstance(reset_every, (int, np.integer)) or reset_every < 1):
        raise TinylocError(f"--reset-every must be a whole number of samples >= 1, got {reset_every!r}")


def decoder_label(method: str, lag: int = 0) -> str:
    """The key of one decoder's scores in a streaming report: ``filter``, ``viterbi_lag10``."""
    return "filter" if method == "filter" else f"{method}_lag{int(lag)}"


def decoding_text(settings: dict) -> str:
    """A step model's scoring settings in words: ``"lag 10, reset every 50"``, ``"filter, never reset"``.

    ``settings``: a card's ``model.streaming`` or a sweep variant's ``streaming`` entry (``decoder``,
    default Viterbi; ``lag``; ``reset_every``, 0 or None for never)."""
    method = settings.get("decoder") or "viterbi"
    decoder = "filter" if method == "filter" else f"lag {settings.get('lag')}"
    reset = settings.get("reset_every")
    return f"{decoder}, {f'reset every {reset}' if reset else 'never reset'}"


def decoder_names(lags=DEFAULT_LAGS) -> list[tuple[str, str, int]]:
    """``(label, method, lag)`` for forward filtering and fixed-lag Viterbi at each lag."""
    return [(decoder_label("filter"), "filter", 0)] + [(decoder_label("viterbi", lag), "viterbi", int(lag)) for lag in lags]


def score_decoded(emissions: list[np.ndarray], streams, crf: dict, class_names: list[str], method: str = "viterbi",
                  lag: int = 0) -> dict:
    """Every score (:func:`~tinyloc_tf.training.metrics.score_paths`) of per-stream emissions
    ``[n, K]`` decoded online with one decoder, over all samples of ``streams``."""
    from tinyloc_tf.decoding import decode_stream
    from tinyloc_tf.training.metrics import score_paths

    truth = np.concatenate([s.y for s in streams])[None]
    paths = np.concatenate([decode_stream(e, crf["transitions"], crf["start"], method, lag) for e in emissions])
    return score_paths(truth, paths[None], class_names)


def score_streams(emissions: list[np.ndarray], streams, crf: dict, class_names: list[str], lags=DEFAULT_LAGS) -> dict:
    """Online-decoded scores of per-stream emissions ``[n, K]``: ``{label: {macro_f1, accuracy}}``."""
    scores = {}
    for label, method, lag in decoder_names(lags):
        result = score_decoded(emissions, streams, crf, class_names, method, lag)
        scores[label] = {"macro_f1": result["macro_f1"], "accuracy": result["accuracy"]}
    return scores


def evaluate_streaming(model, data, split: str = "test", lags=DEFAULT_LAGS, run_dir=None,
                       progress: bool = False, reset_every: int | None = None) -> dict:
    """Score a step ``.tflite`` on the continuous streams of a prepared split, in host TFLM.

    Returns the JSON-ready report ``tinyloc evaluate --streaming`` prints: per decoder
    macro-F1 / accuracy over every sample, flash, arena, operators, state bytes; with
    ``run_dir`` (the training run) also the agreement of the int8 emissions' argmax and
    decoded paths with the float step model over the same whole streams (state drift).
    ``reset_every``: the state goes back to zero every that many samples (both models).
    """
    from tinyloc_tf.compression.convert import op_counts
    from tinyloc_tf.compression.metadata import metadata_bytes, read_metadata
    from tinyloc_tf.data import PreparedDataset, load_prepared
    from tinyloc_tf.data.streams import split_streams
    from tinyloc_tf.deployment.host import _check_data_matches, find_arena_bytes, model_bytes

    buf = model_bytes(model)
    meta = read_metadata(buf)
    dataset = data if isinstance(data, PreparedDataset) else load_prepared(data)
    _check_data_matches(meta, dataset)
    streams = split_streams(dataset.split(split), name=split)
    runner = StreamRunner(buf)
    iterator = streams
    if progress:
        from tqdm import tqdm

        iterator = tqdm(streams, desc="tflm streaming", unit="stream", leave=False)
    check_reset_every(reset_every)
    emissions = [runner.run(s.X, reset_every)[1] for s in iterator]
    classes = list(meta.get("classes") or dataset.class_names)
    report = {
        "model": None if isinstance(model, (bytes, bytearray, memoryview)) else str(model),
        "mode": "streaming",
        "quant": meta.get("quant"),
        "family": meta.get("family"),
        "hidden": meta.get("hidden"),
        "layers": meta.get("layers"),
        "params": meta.get("params"),
        "runtime": "tflm",
        "split": split,
        "streams": len(streams),
        "samples": int(sum(len(s) for s in streams)),
        "longest_stream": int(max((len(s) for s in streams), default=0)),
        "flash_bytes": len(buf),
        "metadata_bytes": metadata_bytes(buf),
        "arena_bytes": find_arena_bytes(buf),
        "state_bytes": runner.layout.get("state_bytes"),
        "reset_every": reset_every,
        "operators": sum(op_counts(buf).values()),
        "tensors": _tensor_count(buf),
        "decoders": score_streams(emissions, streams, meta["crf"], classes, lags),
    }
    if run_dir is not None:
        report["float_agreement"] = _float_agreement(run_dir, streams, emissions, meta["crf"], lags, reset_every,
                                                     meta=meta)
    return report


def _tensor_count(buf: bytes) -> int:
    from tinyloc_tf.compression.flatbuffer import unpack_model

    return len(unpack_model(buf).subgraphs[0].tensors)


def _float_agreement(run_dir, streams, emissions, crf: dict, lags, reset_every: int | None = None,
                     meta: dict | None = None) -> dict:
    """How far the int8 step model drifts from the float one over whole streams."""
    from tinyloc_tf.training.artifacts import load_run
    from tinyloc_tf.models.mamba_step import build_step_model, run_stream
    from tinyloc_tf.decoding import decode_stream
    from pathlib import Path

    from tinyloc_tf.deployment.host import check_run_is_the_source

    tagger, _ = load_run(Path(run_dir))
    check_run_is_the_source(run_dir, tagger.build_config, meta or {})
    step = build_step_model(tagger)
    float_emissions = [run_stream(step, s.X, reset_every=reset_every) for s in streams]
    agreement = {"argmax": float(np.mean(np.concatenate(
        [np.argmax(a, 1) == np.argmax(b, 1) for a, b in zip(emissions, float_emissions)])))}
    span = max(float(np.ptp(np.concatenate(float_emissions))), 1e-12)
    errors = np.concatenate([np.abs(a - b).max(axis=1) for a, b in zip(emissions, float_emissions)])
    agreement["emission_max_abs_diff_over_range"] = float(errors.max() / span)
    # Drift: the error in the first and the last 20 % of each stream.
    early = np.concatenate([np.abs(a - b)[: max(1, len(a) // 5)].mean(axis=1) for a, b in zip(emissions, float_emissions)])
    late = np.concatenate([np.abs(a - b)[-max(1, len(a) // 5):].mean(axis=1) for a, b in zip(emissions, float_emissions)])
    agreement["mean_abs_diff_first_fifth"] = float(early.mean())
    agreement["mean_abs_diff_last_fifth"] = float(late.mean())
    for label, method, lag in decoder_names(lags):
        a = np.concatenate([decode_stream(e, crf["transitions"], crf["start"], method, lag) for e in emissions])
        b = np.concatenate([decode_stream(e, crf["transitions"], crf["start"], method, lag) for e in float_emissions])
        agreement[f"path_{label}"] = float(np.mean(a == b))
    return agreement
