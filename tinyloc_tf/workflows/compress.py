"""The compression phase of a sweep: convert each finished run into its variants, score each.

A variant's ``.tflite`` is written before its ``.json``, both through temporary names, so a
variant counts as done exactly when its JSON exists (``training/artifacts.py``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tinyloc_tf.atomic import write_atomic
from tinyloc_tf.compression.variants import ConvertOptions, get_variant
from tinyloc_tf.training.artifacts import json_bytes, load_run, sweep_run, variant_path
from tinyloc_tf.workflows.execute import worker_environment


def score_variant(buf: bytes, data, runtime: str, keras_paths: dict | None = None,
                  splits: tuple[str, ...] = ("val", "test")) -> dict:
    """``{split: scores}`` of a ``.tflite`` decoded with the CRF in its metadata, for each of
    ``splits`` (recipe and representation choices pass ``("val",)``: the test split unread).

    Scores are :func:`~tinyloc_tf.training.metrics.score_paths` plus ``agreement_with_keras``
    (fraction of steps where the Viterbi path equals the float Keras model's) when
    ``keras_paths`` is given.
    """
    import numpy as np

    from tinyloc_tf.deployment.host import predict_paths
    from tinyloc_tf.training.metrics import score_paths

    scores = {}
    for split in splits:
        part = data.split(split)
        paths, _ = predict_paths(buf, part.X, runtime=runtime)
        scores[split] = score_paths(part.y, paths, data.class_names)
        if keras_paths is not None:
            scores[split]["agreement_with_keras"] = float(np.mean(paths == keras_paths[split]))
    return scores


def compress_run(run_dir: str | os.PathLike, data, variants, options: ConvertOptions | None = None) -> dict:
    """Convert one finished run into ``variants`` and score each on val and test.

    Writes ``RUN/variants/<variant>.tflite`` and then ``RUN/variants/<variant>.json``::

        {"variant", "run", "runtime": "tflm" | "litert", "deployable": bool, "note",
         "flash_bytes", "metadata_bytes", "arena_bytes" (None off TFLM),
         "val": {macro_f1, accuracy, per_class_f1, confusion_matrix, steps, agreement_with_keras},
         "test": {...}, "conversion": {ops, float_ops, kept_float, qat, ...}}

    ``flash_bytes`` is the ``.tflite`` file: what the firmware embeds, including the
    metadata (``metadata_bytes`` of it) that carries the CRF weights Viterbi needs.
    Deployable variants are scored in host TFLM with the smallest working arena
    (``find_arena_bytes``, in child processes); the others (dynamic range: hybrid ops) with
    LiteRT and ``deployable: false``. A streaming variant (``stream-*``) is the run's step
    model, scored on the split's whole streams (:func:`_convert_and_score_streaming`); runs
    it does not apply to (MDCSA, one-scan data) are skipped. Variants whose JSON exists are
    read back, not redone. ``options``: every conversion option (their defaults:
    ``ConvertOptions()``). Returns ``{variant: record}``.
    """
    from tinyloc_tf.data import PreparedDataset, load_prepared

    run_dir = Path(run_dir)
    data = data if isinstance(data, PreparedDataset) else load_prepared(data)
    options = options if options is not None else ConvertOptions()
    records, tagger, keras_paths = {}, None, None
    build = None
    for variant in variants:
        json_path = variant_path(run_dir, variant, ".json")
        if json_path.is_file():
            records[variant] = json.loads(json_path.read_text())
            continue
        spec = get_variant(variant)
        if build is None:  # from config.json: a run a variant does not apply to is never loaded
            build = _run_build(run_dir)
        if not spec.applies_to(build.get("family", ""), data.steps, build.get("members", 1)):
            continue
        if tagger is None:
            tagger, _ = load_run(run_dir)
        if spec.streaming:
            records[variant] = _convert_and_score_streaming(run_dir, tagger, data, variant, options)
            continue
        if keras_paths is None:
            keras_paths = {split: tagger.decode(data.split(split).X) for split in ("val", "test")}
        records[variant] = _convert_and_score(run_dir, tagger, data, variant, keras_paths, options)
    return records


def _run_build(run_dir: Path) -> dict:
    """The ``build_config`` a run folder's ``config.json`` records ({} when it records none, so
    only variants for every family apply)."""
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    return config.get("build_config") or {}


def _save(run_dir: Path, variant: str, buf: bytes, record: dict) -> dict:
    write_atomic(variant_path(run_dir, variant, ".tflite"), buf)
    write_atomic(variant_path(run_dir, variant, ".json"), json_bytes(record))
    return record


def convert_variant(tagger, data, variant: str, options: ConvertOptions, run_name: str | None = None):
    """``variant`` of a trained window tagger as a sweep converts it: calibrated (and for QAT
    fine-tuned) on the training split, QAT checkpoints picked on validation, the data's metadata
    and ``run_name`` embedded. Returns the :class:`~tinyloc_tf.compression.convert.Conversion`."""
    from tinyloc_tf.compression.convert import convert, data_metadata

    metadata = data_metadata(data)
    if run_name is not None:
        metadata["run"] = {"name": run_name}
    kwargs = options.convert_kwargs()
    kwargs["qat_options"]["progress"] = False
    return convert(tagger, variant, representative=data.train.X, metadata=metadata, labels=data.train.y,
                   validation=(data.val.X, data.val.y), **kwargs)


def _convert_and_score(run_dir: Path, tagger, data, variant: str, keras_paths, options: ConvertOptions) -> dict:
    from tinyloc_tf.deployment.host import find_arena_bytes, tflm_blocker

    result = convert_variant(tagger, data, variant, options, run_name=run_dir.name)
    buf = result.tflite
    blocker = tflm_blocker(buf)
    runtime = "tflm" if blocker is None else "litert"
    record = {
        "variant": variant,
        "run": run_dir.name,
        "runtime": runtime,
        "deployable": blocker is None,
        "note": blocker,
        "flash_bytes": result.report["bytes"],
        "metadata_bytes": result.report["metadata_bytes"],
        "arena_bytes": find_arena_bytes(buf) if blocker is None else None,
        **score_variant(buf, data, runtime, keras_paths),
        "conversion": {key: value for key, value in result.report.items() if key != "bytes"},
        "data_sha256": data.fingerprint(),
    }
    return _save(run_dir, variant, buf, record)


def _convert_and_score_streaming(run_dir: Path, tagger, data, variant: str, options: ConvertOptions) -> dict:
    """The step model of a Mamba run, calibrated on the training streams, run sample by sample
    in host TFLM over every val and test stream (from a zero state, reset every
    ``options.stream_reset_every`` samples) and decoded online with fixed-lag Viterbi
    (``options.stream_lag``); scored over all samples like a window variant."""
    from tinyloc_tf.compression.convert import data_metadata
    from tinyloc_tf.compression.metadata import read_metadata
    from tinyloc_tf.compression.streaming import convert_streaming
    from tinyloc_tf.data.streams import split_streams
    from tinyloc_tf.deployment.host import find_arena_bytes
    from tinyloc_tf.deployment.streaming import StreamRunner, score_decoded

    metadata = data_metadata(data)
    metadata["run"] = {"name": run_dir.name}
    quant = get_variant(variant).streaming
    calibration = [s.X for s in split_streams(data.train, name="train")]
    result = convert_streaming(tagger, calibration, metadata, quant=quant,
                               seed=options.seed, per_tensor_weights=options.per_tensor_weights)
    buf = result.tflite
    crf = read_metadata(buf)["crf"]
    runner = StreamRunner(buf)
    reset_every = options.stream_reset_every or None
    scores = {}
    for split in ("val", "test"):
        streams = split_streams(data.split(split), name=split)
        emissions = [runner.run(s.X, reset_every)[1] for s in streams]
        scores[split] = score_decoded(emissions, streams, crf, data.class_names, "viterbi", options.stream_lag)
    record = {
        "variant": variant,
        "run": run_dir.name,
        "runtime": "tflm",
        "deployable": True,
        "note": None,
        "flash_bytes": result.report["bytes"],
        "metadata_bytes": result.report["metadata_bytes"],
        "arena_bytes": find_arena_bytes(buf),
        "streaming": {"decoder": "viterbi", "lag": options.stream_lag, "reset_every": reset_every,
                      "state_bytes": result.report["state_bytes"], "operators": result.report["operators"]},
        **scores,
        "conversion": {key: value for key, value in result.report.items() if key != "bytes"},
        "data_sha256": data.fingerprint(),
    }
    return _save(run_dir, variant, buf, record)


def execute_compression(run_name: str, settings: dict) -> dict:
    """Task wrapper of :func:`compress_run` for one run of the sweep (a worker or a Ray task)."""
    worker_environment(settings)
    return compress_run(sweep_run(settings["sweep_dir"], run_name), settings["data"], settings["variants"],
                        sweep_convert_options(settings))


def sweep_convert_options(settings: dict) -> ConvertOptions:
    """The conversion options a sweep (its ``sweep.json`` settings) converts with."""
    options = settings.get("convert_options")
    if options is None:  # a sweep folder from before conversion options were recorded
        options = {"seed": settings.get("seed", 0), "qat_epochs": settings.get("qat_epochs", 3)}
    return ConvertOptions.from_dict(options)


