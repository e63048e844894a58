"""What training, sweeps and compression leave on disk, and how to read it back.

::

    RUN/model.keras, history.csv, config.json, metrics.json     a run (train, distil, refit);
                                                                metrics.json written last
    SWEEP/sweep.json, teachers.json, tensorflow.log             a sweep's settings and choices
    SWEEP/runs/<run>/                                           one run folder per configuration
    SWEEP/runs/<run>/variants/<variant>.tflite | .json          a converted variant, its scores
    SWEEP/baselines/baselines.json                              the classical baselines

Every module that reads or writes these paths goes through here, so the layout is spelled
out once. (Running a ``.tflite`` and decoding its paths is the runtime's job:
:func:`tinyloc_tf.deployment.host.predict_paths`.)
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from tinyloc_tf.errors import TinylocError, read_json_object, shown


def sweep_runs(sweep_dir: str | os.PathLike) -> Path:
    return Path(sweep_dir) / "runs"


def sweep_members(sweep_dir: str | os.PathLike) -> Path:
    """Extra seeds trained only to be ensemble members: not candidates, so not under ``runs``."""
    return Path(sweep_dir) / "members"


def sweep_run(sweep_dir: str | os.PathLike, run: str) -> Path:
    return sweep_runs(sweep_dir) / run


def variant_path(run_dir: str | os.PathLike, variant: str, suffix: str = ".tflite") -> Path:
    """``RUN/variants/<variant><suffix>`` (``.tflite`` or ``.json``)."""
    return Path(run_dir) / "variants" / f"{variant}{suffix}"


def variant_records(run_dir: str | os.PathLike) -> list[Path]:
    """The finished variants of a run: their ``.json`` files, sorted by name."""
    return sorted((Path(run_dir) / "variants").glob("*.json"))


def baselines_dir(sweep_dir: str | os.PathLike) -> Path:
    return Path(sweep_dir) / "baselines"


def read_metrics(run_dir: str | os.PathLike) -> dict | None:
    """A finished run's ``metrics.json``, or None while it is not finished."""
    path = Path(run_dir) / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def distinct_runs(runs, what: str = "run") -> list[Path]:
    """Run folders as paths, refusing one given twice (by resolved path); ``what`` names them."""
    runs = [Path(run) for run in runs]
    resolved = [run.resolve() for run in runs]
    repeated = sorted({str(run) for run, r in zip(runs, resolved) if resolved.count(r) > 1})
    if repeated:
        raise TinylocError(f"{what} given twice: {', '.join(repeated)}; an ensemble needs distinct runs")
    return runs


def json_bytes(payload: dict) -> bytes:
    """Indented JSON with numpy values as plain numbers, for :func:`~tinyloc_tf.atomic.write_atomic`."""

    def default(value):
        import numpy as np

        if isinstance(value, np.ndarray):
            return value.tolist()
        if isinstance(value, np.generic):
            return value.item()
        return str(value)

    return (json.dumps(payload, indent=2, default=default) + "\n").encode()


#: Fields of a run's ``config.json`` that must be JSON objects, and those that must be strings.
CONFIG_OBJECTS = ("build_config", "training", "distill", "ensemble")
CONFIG_STRINGS = ("data_dir", "data_fingerprint", "kind")


def read_run_json(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict:
    """A run's ``config.json`` or ``metrics.json`` as a dict, its known fields of the right JSON
    type and ``required`` present; anything else is an error naming the file and the field."""
    path = Path(path)
    payload = read_json_object(path, missing=f"not found (is {path.parent} a finished run folder?)")
    for key in required:
        if key not in payload:
            raise TinylocError(f"{path}: no {key!r} field (is {path.parent} a run made by tinyloc train?)")
    for keys, kind, name in ((CONFIG_OBJECTS, dict, "an object"), (CONFIG_STRINGS, str, "a string")):
        for key in keys:
            if payload.get(key) is not None and not isinstance(payload[key], kind):
                raise TinylocError(f"{path}: {key!r} must be {name}, got {shown(payload[key], 60)}")
    return payload


def load_run(run: str | os.PathLike, what: str = "run"):
    """``(tagger, config)`` of a run folder; ``what`` names it in errors (e.g. "teacher run")."""
    run = Path(run)
    model_path, config_path = run / "model.keras", run / "config.json"
    if run.exists() and not run.is_dir():
        raise TinylocError(f"{what} {run} is a file; expected a run folder (with model.keras and config.json)")
    if not run.is_dir():
        raise TinylocError(f"{what} {run} not found")
    if not model_path.is_file():
        raise TinylocError(f"{what} {run} has no model.keras (is it a finished training run folder?)")
    config = read_run_json(config_path) if config_path.is_file() else {}
    import keras

    import tinyloc_tf.models  # noqa: F401  (registers the custom layers)
    from tinyloc_tf.families import FAMILIES

    family = (config.get("build_config") or {}).get("family")
    if family in FAMILIES.names():
        FAMILIES.get(family).encoder_class()  # imports a registered family's module, registering its encoder
    if not zipfile.is_zipfile(model_path):  # Keras says "File not found" of a damaged archive
        raise TinylocError(f"{model_path}: cannot load the Keras model (not a .keras zip archive: truncated or "
                           "not written by Keras); train the run again")
    try:
        tagger = keras.models.load_model(model_path)
    except (ValueError, TypeError, OSError, KeyError, zipfile.BadZipFile) as exc:
        raise TinylocError(f"{model_path}: cannot load the Keras model ({shown(exc, 200)})") from exc
    return tagger, config


def check_model_fits_data(tagger, dataset, what: str = "the model") -> None:
    """A Keras tagger's features, classes and window length must be the dataset's."""
    config = getattr(tagger, "build_config", {}) or {}
    expected = {"features": dataset.num_features, "classes": dataset.num_classes, "steps": dataset.steps}
    wrong = {k: (config.get(k), v) for k, v in expected.items() if config.get(k) not in (None, v)}
    if wrong:
        detail = ", ".join(f"{k}: model {m}, data {d}" for k, (m, d) in wrong.items())
        raise TinylocError(f"{what} does not fit {dataset.path} ({detail})")
