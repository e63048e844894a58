"""Train one model on a prepared dataset and write a run folder.

``train_run`` is the whole job behind ``tinyloc train``:

1. load the prepared data, build the tagger (``build_model``), seed everything;
2. ``model.fit`` on the CRF negative log-likelihood; after every epoch
   :class:`ViterbiValidation` decodes the validation set (Viterbi path) and puts
   ``val_macro_f1`` / ``val_accuracy`` / ``val_nll`` into the epoch logs, where Keras'
   ``EarlyStopping`` watches ``val_macro_f1`` and restores the best epoch's weights;
3. with those weights, score validation and - once, at the very end - test;
4. write ``RUN/model.keras``, ``history.csv``, ``config.json``, ``metrics.json`` into a
   hidden temporary folder and rename it to ``RUN`` last, so a crash never leaves a
   folder that looks finished.

The fitting and run-writing pieces (:func:`fit_with_validation`, :func:`write_run`) are
shared with distillation (``distill.py``), which trains a student the same way.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np

from tinyloc_tf.atomic import check_output, staged_folder
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.families import get_family
from tinyloc_tf.lifetime import deferred_interrupts, raise_if_interrupted
from tinyloc_tf.training.recipe import Recipe


# lr 5e-3 / batch 32: on the synthetic house, Mamba H8L1 reaches val macro-F1 0.83 in 40
# epochs, against 0.68 with 1e-3 / 64 (docs/training.md).
DEFAULTS = dict(epochs=100, batch_size=32, lr=5e-3, patience=15, seed=0)


# --------------------------------------------------------------------------- checks


def check_family(family: str) -> str:
    return get_family(family).name


def check_training_args(hidden: int, layers: int, epochs: int, batch_size: int, lr: float, patience: int) -> None:
    for name, value in (("hidden", hidden), ("layers", layers), ("epochs", epochs), ("batch_size", batch_size)):
        if int(value) < 1:
            raise TinylocError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if not (lr > 0 and math.isfinite(lr)):
        raise TinylocError(f"--lr must be a positive number, got {lr}")
    if patience < 0:
        raise TinylocError(f"--patience must be 0 or more, got {patience}")


def check_out(out: str | os.PathLike, overwrite: bool, inputs=()) -> Path:
    """Refuse to clobber a run folder (or an input) unless asked, and an unwritable ``out``,
    before training starts; returns the absolute path."""
    return check_output(out, overwrite=overwrite, inputs=inputs, kind="folder").absolute()


# --------------------------------------------------------------------------- determinism


def steps_per_epoch(examples: int, batch_size: int) -> int:
    return max(1, math.ceil(int(examples) / int(batch_size)))


def seed_everything(seed: int) -> None:
    """Same seed and data -> same weights and metrics (on CPU).

    ``set_random_seed`` seeds Python, NumPy, TensorFlow and Keras' global generator;
    op determinism makes TF kernels (and tf.data shuffling) reproducible. The latter is
    process-wide and cannot be switched off again, which is what a training process wants.
    """
    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()


# --------------------------------------------------------------------------- decoding


# --------------------------------------------------------------------------- callbacks


def _keras_callbacks():
    """Callback classes, defined on first use so importing this module stays TF-free."""
    import keras

    class ViterbiValidation(keras.callbacks.Callback):
        """Adds ``val_macro_f1``, ``val_accuracy`` and ``val_nll`` to the epoch logs.

        ``tagger`` is the model whose Viterbi path is scored; it is ``self.model`` for
        plain training and the student inside the distillation wrapper otherwise.
        Must come before ``EarlyStopping`` in the callback list, which reads these logs.
        """

        def __init__(self, tagger, X, y, batch_size=256):
            super().__init__()
            self.tagger, self.X, self.y, self.batch_size = tagger, X, y, batch_size

        def on_epoch_end(self, epoch, logs=None):
            from tinyloc_tf.decoding import viterbi_decode
            from tinyloc_tf.training.metrics import accuracy, macro_f1

            emissions = self.tagger.emissions(self.X, self.batch_size)
            paths = viterbi_decode(emissions, *self.tagger.crf.get_weights())
            if logs is not None:
                logs["val_nll"] = float(self.tagger.crf.nll(emissions, self.y))
                logs["val_macro_f1"] = macro_f1(self.y, paths)
                logs["val_accuracy"] = accuracy(self.y, paths)

    class EpochProgress(keras.callbacks.Callback):
        """One tqdm bar over the epochs, showing loss and validation macro-F1."""

        def __init__(self, total, desc):
            super().__init__()
            self.total, self.desc, self.bar, self.best = total, desc, None, -1.0

        def on_train_begin(self, logs=None):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit="epoch", dynamic_ncols=True)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.best = max(self.best, logs.get("val_macro_f1", -1.0))
            self.bar.set_postfix(
                loss=f"{logs.get('loss', float('nan')):.4f}",
                val_f1=f"{logs.get('val_macro_f1', float('nan')):.4f}",
                best=f"{self.best:.4f}",
            )
            self.bar.update(1)

        def on_train_end(self, logs=None):
            if self.bar is not None:
                self.bar.close()

    class StopOnInterrupt(keras.callbacks.Callback):
        """Stops ``fit`` at the next batch after a Ctrl-C, even one TensorFlow swallowed."""

        def on_train_batch_end(self, batch, logs=None):
            raise_if_interrupted()

        def on_epoch_end(self, epoch, logs=None):
            raise_if_interrupted()

    return ViterbiValidation, EpochProgress, StopOnInterrupt


@contextlib.contextmanager
def expected_warnings(x):
    """Silence what Keras says about training on ``x`` that is expected, not a fault."""
    with warnings.catch_warnings():
        if np.shape(x)[1] == 1:
            # One scan per window: the CRF transitions and Mamba's decay A never act, so Keras
            # warns that they get no gradient (and asks about a missing loss). Expected here.
            warnings.filterwarnings("ignore", message="Gradients do not exist for variables", category=UserWarning)
        yield


def fit_with_validation(
    trainable,
    tagger,
    x,
    y,
    val,
    *,
    epochs: int,
    batch_size: int,
    patience: int,
    verbose: int = 1,
    desc: str = "train",
    callbacks: tuple = (),
):
    """``trainable.fit(x, y)`` with per-epoch Viterbi validation and early stopping.

    ``trainable`` is the compiled Keras model whose loss is minimised (the tagger itself,
    or a distillation wrapper around it); ``tagger`` is scored on ``val = (X_val, y_val)``.
    Keeps the weights of the epoch with the best validation macro-F1 (earliest on ties).
    ``verbose``: 0 silent, 1 a tqdm bar over epochs, 2 Keras' per-step bar. Extra
    ``callbacks`` run after validation and early stopping (they see the new logs).

    Returns ``(history: pandas.DataFrame, best_epoch: int (1-based), epochs_run, seconds)``.
    """
    import keras
    import pandas as pd

    ViterbiValidation, EpochProgress, StopOnInterrupt = _keras_callbacks()
    stopper = keras.callbacks.EarlyStopping(
        monitor="val_macro_f1", mode="max", patience=patience, restore_best_weights=True
    )
    callbacks = [StopOnInterrupt(), ViterbiValidation(tagger, *val), stopper, *callbacks]
    if getattr(trainable.optimizer, "use_ema", False):
        # First in the list: from each epoch's end to the next epoch's start the model holds
        # the weight average, so validation scores it and early stopping keeps it.
        callbacks.insert(0, keras.callbacks.SwapEMAWeights(swap_on_epoch=True))
    if verbose == 1:
        callbacks.append(EpochProgress(epochs, desc))
    started = time.perf_counter()
    with expected_warnings(x), deferred_interrupts():  # StopOnInterrupt raises a Ctrl-C
        history = trainable.fit(
            x, y, epochs=epochs, batch_size=batch_size, shuffle=True,
            callbacks=callbacks, verbose=2 if verbose >= 2 else 0,
        )
    seconds = time.perf_counter() - started
    frame = pd.DataFrame(history.history)
    if not all(np.isfinite(np.asarray(w)).all() for w in tagger.weights):
        losses = frame["loss"].to_numpy() if "loss" in frame else np.array([])
        first = int(np.flatnonzero(~np.isfinite(losses))[0]) + 1 if (~np.isfinite(losses)).any() else None
        raise TinylocError(
            "training diverged: the model's weights are not finite"
            + (f" (the loss was not a number from epoch {first})" if first else "")
            + "; lower --lr, or check the data; no run was written"
        )
    # epoch, loss, its parts (distillation), then the validation columns
    order = ["loss"] + sorted(c for c in frame if c != "loss" and not c.startswith("val_"))
    order += [c for c in ("val_nll", "val_macro_f1", "val_accuracy") if c in frame]
    frame = frame[order + [c for c in frame if c not in order]]
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return frame, int(stopper.best_epoch) + 1, len(frame), seconds


# --------------------------------------------------------------------------- run folders


def software_versions() -> dict:
    import keras
    import tensorflow as tf

    from tinyloc_tf import __version__

    return {"tinyloc_tf": __version__, "tensorflow": tf.__version__, "keras": keras.__version__}


def count_params(model) -> int:
    """Trainable parameters: the "used params" MODELS.md counts."""
    return int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))


def score_splits(tagger, data, batch_size: int = 256) -> dict:
    """Validation and test scores of ``tagger``. Call once per run: this touches test."""
    from tinyloc_tf.training.metrics import score_paths

    names = data.class_names
    return {
        split: score_paths(getattr(data, split).y, tagger.decode(getattr(data, split).X, batch_size), names)
        for split in ("val", "test")
    }


def write_run(out: Path, tagger, history, config: dict, metrics: dict, overwrite: bool = False) -> Path:
    """Write the run folder atomically: everything goes to a hidden sibling, renamed last."""
    with staged_folder(out, overwrite=overwrite, inputs=(config.get("data_dir"),)) as staging:
        tagger.save(staging / "model.keras")
        history.to_csv(staging / "history.csv", index=False)
        for name, payload in (("config.json", config), ("metrics.json", metrics)):
            with open(staging / name, "w") as handle:
                json.dump(payload, handle, indent=2)
                handle.write("\n")
    return out


def run_metrics(tagger, data, scores: dict, *, best_epoch, epochs_run, fit_seconds, started, seed) -> dict:
    """The ``metrics.json`` body shared by train and distill runs."""
    build = dict(tagger.build_config)
    return {
        "family": build.get("family"),
        "hidden": build.get("hidden"),
        "layers": build.get("layers"),
        "params": count_params(tagger),
        "val_macro_f1": scores["val"]["macro_f1"],
        "val_accuracy": scores["val"]["accuracy"],
        "test_macro_f1": scores["test"]["macro_f1"],
        "test_accuracy": scores["test"]["accuracy"],
        "val": scores["val"],
        "test": scores["test"],
        "classes": data.class_names,
        "epochs_run": epochs_run,
        "best_epoch": best_epoch,
        "fit_seconds": round(fit_seconds, 3),
        "seconds_per_epoch": round(fit_seconds / max(epochs_run, 1), 3),
        "wall_time_s": round(time.perf_counter() - started, 3),
        "seed": int(seed),
        "data_sha256": data.fingerprint(),
        "source_sha256": data.meta.get("source_sha256"),
    }


def _optimizer_name(recipe: dict | None) -> str:
    return "adamw" if recipe and recipe.get("weight_decay", 0) > 0 else "adam"


def run_config(kind: str, tagger, data_dir, metrics: dict, **training) -> dict:
    """The ``config.json`` body shared by train and distill runs: what rebuilds the model,
    which data it saw, and the training settings (``training``: epochs, lr, loss, ...)."""
    return {
        "kind": kind,
        "build_config": dict(tagger.build_config),
        "data_dir": str(Path(data_dir).absolute()),
        "data_fingerprint": metrics["data_sha256"],
        "source_sha256": metrics["source_sha256"],
        "training": {**training, "optimizer": _optimizer_name(training.get("recipe")),
                     "selection": "val_macro_f1 (Viterbi path)"},
        "versions": software_versions(),
    }


def load_data(data_dir):
    from tinyloc_tf.data import load_prepared

    return load_prepared(data_dir)


# --------------------------------------------------------------------------- entry point


def training_set(split, recipe, family: str) -> tuple:
    """``(X, y, summary)`` the recipe trains a ``family`` model on: the prepared windows of
    ``split``, or with ``recipe.train_steps`` windows that long cut from its streams
    (:func:`~tinyloc_tf.data.streams.stream_windows`; ``summary`` says what they cover)."""
    if not recipe.train_steps:
        return split.X, split.y, None
    recipe.check_family(family)
    from tinyloc_tf.data.streams import stream_windows

    return stream_windows(split, recipe.train_steps)


def fit_model(data, family: str, hidden: int, layers: int, *, epochs: int = DEFAULTS["epochs"],
              batch_size: int = DEFAULTS["batch_size"], lr: float = DEFAULTS["lr"],
              patience: int = DEFAULTS["patience"], seed: int = DEFAULTS["seed"], int8_friendly: bool = False,
              recipe=None, verbose: int = 1, desc: str | None = None, callbacks: tuple = (),
              training: tuple | None = None):
    """Build and train a model in memory on a loaded dataset (what ``train_run`` does before
    it scores and writes): ``(model, history, best_epoch, epochs_run, fit_seconds)``.

    For measurements that need the trained model, not a run folder. ``recipe`` None is the
    default :class:`~tinyloc_tf.training.recipe.Recipe`; ``callbacks`` go to
    :func:`fit_with_validation`; ``training``: the ``(X, y)`` of :func:`training_set` when the
    caller already has it.
    """
    from tinyloc_tf.models import build_model

    recipe = recipe if recipe is not None else Recipe()
    seed_everything(seed)
    model = build_model(
        family, features=data.num_features, classes=data.num_classes, hidden=int(hidden),
        layers=int(layers), steps=data.steps, int8_friendly=bool(int8_friendly),
        augmentation=recipe.augmentation(data.meta["scaling"], seed), **recipe.family_options(),
    )
    X, y = training if training is not None else training_set(data.train, recipe, family)[:2]
    model.compile(optimizer=recipe.optimizer(lr, epochs, steps_per_epoch(len(X), batch_size)))
    history, best_epoch, epochs_run, fit_seconds = fit_with_validation(
        model, model, X, y, (data.val.X, data.val.y),
        epochs=epochs, batch_size=batch_size, patience=patience, verbose=verbose,
        desc=desc or f"train {family} H{hidden}L{layers}", callbacks=callbacks,
    )
    return model, history, best_epoch, epochs_run, fit_seconds


def train_run(
    data_dir: str | os.PathLike,
    family: str,
    hidden: int,
    layers: int,
    out: str | os.PathLike,
    *,
    epochs: int = DEFAULTS["epochs"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    patience: int = DEFAULTS["patience"],
    seed: int = DEFAULTS["seed"],
    int8_friendly: bool = False,
    recipe=None,
    overwrite: bool = False,
    verbose: int = 1,
) -> dict:
    """Train ``family`` H``hidden`` L``layers`` on ``data_dir`` and write the run folder ``out``.

    ``recipe``: a :class:`~tinyloc_tf.training.recipe.Recipe` (None: the default recipe).

    Returns the ``metrics.json`` dict (see ``docs/training.md`` for every field).
    Raises ``DataError`` for a missing or malformed data folder and ``TinylocError`` for
    bad arguments or an existing ``out``.
    """
    started = time.perf_counter()
    check_family(family)
    check_training_args(hidden, layers, epochs, batch_size, lr, patience)
    recipe = recipe if recipe is not None else Recipe()
    recipe.check_family(family)
    out = check_out(out, overwrite, inputs=(data_dir,))
    data = load_data(data_dir)
    X, y, windows = training_set(data.train, recipe, family)
    model, history, best_epoch, epochs_run, fit_seconds = fit_model(
        data, family, hidden, layers, epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
        seed=seed, int8_friendly=int8_friendly, recipe=recipe, verbose=verbose, training=(X, y),
    )
    scores = score_splits(model, data)
    metrics = run_metrics(
        model, data, scores, best_epoch=best_epoch, epochs_run=epochs_run,
        fit_seconds=fit_seconds, started=started, seed=seed,
    )
    if recipe.train_steps:
        metrics["training_windows"] = windows
    config = run_config(
        "train", model, data_dir, metrics,
        epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
        int8_friendly=bool(int8_friendly), loss="crf_nll", recipe=recipe.to_dict(),
    )
    write_run(out, model, history, config, metrics, overwrite=overwrite)
    return metrics


# --------------------------------------------------------------------------- refit


def refit_run(run_dir: str | os.PathLike, out: str | os.PathLike, *, data_dir=None, overwrite: bool = False,
              verbose: int = 1) -> dict:
    """Retrain a finished run's configuration on train + val together, then score test once.

    Selection used val to pick the configuration and its number of epochs (the run's
    ``best_epoch``); the final model may then learn from the validation users too, as the
    classical baselines' final fit would. Same architecture, recipe, batch size, learning
    rate and seed; the schedule spans exactly ``best_epoch`` epochs, with no early stopping
    (nothing held out is left to stop on). ``metrics.json`` records val scores as in-sample
    (``val_in_sample: true``) and the refit's origin under ``refit``. An ensemble run
    (``tinyloc ensemble``) refits each member this way and assembles them again.
    """
    started = time.perf_counter()
    from tinyloc_tf.training.artifacts import read_run_json

    run_dir = Path(run_dir)
    config = read_run_json(run_dir / "config.json", required=("data_fingerprint", "training", "build_config"))
    source_metrics = read_run_json(run_dir / "metrics.json", required=("val_macro_f1",))
    if data_dir is None and not config.get("data_dir"):
        raise TinylocError(f"{run_dir}/config.json names no data_dir; pass --data DIR")
    data_dir = data_dir if data_dir is not None else config["data_dir"]
    out = check_out(out, overwrite, inputs=(run_dir, data_dir))
    data = load_data(data_dir)
    if data.fingerprint() != config["data_fingerprint"]:
        raise TinylocError(f"{data_dir}: not the data {run_dir} was trained on (fingerprint differs)")
    import pandas as pd

    if config.get("kind") == "ensemble":
        from tinyloc_tf.models.tagger import ensemble_of

        members = [Path(member["run"]) for member in config["ensemble"]["members"]]
        fits = [_refit_model(member, data, verbose) for member in members]
        model = ensemble_of([fit[0] for fit in fits])
        history = pd.concat([fit[1].assign(member=member.name) for fit, member in zip(fits, members)])
        epochs = [fit[2] for fit in fits]
        fit_seconds = sum(fit[3] for fit in fits)
        seed = config["training"]["seed"]
        refit = {"of": run_dir.name, "epochs": epochs, "members": [member.name for member in members]}
    else:
        model, history, epochs, fit_seconds = _refit_model(run_dir, data, verbose)
        seed = int(config["training"]["seed"])
        refit = {"of": run_dir.name, "epochs": epochs}
    scores = score_splits(model, data)
    # an ensemble's epochs are a list, one per member; they ran one after the other
    metrics = run_metrics(model, data, scores, best_epoch=epochs, fit_seconds=fit_seconds, started=started, seed=0,
                          epochs_run=sum(epochs) if isinstance(epochs, list) else epochs)
    metrics["seed"] = seed
    metrics["val_in_sample"] = True
    metrics["refit"] = {**refit, "source_val_macro_f1": source_metrics["val_macro_f1"], "fit_splits": ["train", "val"]}
    if "ensemble" in source_metrics:  # the members it refit, as the source ensemble names them
        metrics["ensemble"] = source_metrics["ensemble"]
    training = {**config["training"], "epochs": epochs, "patience": None}
    run_config_body = run_config("refit", model, data_dir, metrics, **training)
    run_config_body["refit"] = metrics["refit"]
    run_config_body["training"]["selection"] = f"none: {epochs} epochs, the best epoch of {run_dir.name} on val"
    write_run(out, model, history, run_config_body, metrics, overwrite=overwrite)
    return metrics


def _refit_model(run_dir: Path, data, verbose: int):
    """``(model, history frame, epochs, fit seconds)``: ``run_dir``'s configuration, recipe and
    seed trained on train + val for its best epoch count."""
    from tinyloc_tf.training.artifacts import read_run_json

    config = read_run_json(run_dir / "config.json", required=("training",))
    source_metrics = read_run_json(run_dir / "metrics.json", required=("best_epoch",))
    if config.get("kind") == "distill":
        # Retraining without the teacher would ship a plain model under the student's name.
        raise TinylocError(f"{run_dir}: a distilled run; refit retrains plain runs only (it has no teacher term)")
    training = config["training"]
    epochs = int(source_metrics["best_epoch"])
    recipe = Recipe.from_dict(training.get("recipe"))
    seed, batch_size, lr = int(training["seed"]), int(training["batch_size"]), float(training["lr"])

    from tinyloc_tf.models import build_model

    seed_everything(seed)
    build = dict(config["build_config"])
    family = build.pop("family")
    model = build_model(family, **build, augmentation=recipe.augmentation(data.meta["scaling"], seed))
    # train and val are separate recordings: their streams are cut apart, then pooled
    (X_train, y_train, _), (X_val, y_val, _) = (training_set(split, recipe, family) for split in (data.train, data.val))
    X = np.concatenate([X_train, X_val])
    y = np.concatenate([y_train, y_val])
    model.compile(optimizer=recipe.optimizer(lr, epochs, steps_per_epoch(len(X), batch_size)))
    fit_started = time.perf_counter()
    with expected_warnings(X):
        history = model.fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=2 if verbose >= 2 else 0)
    fit_seconds = time.perf_counter() - fit_started
    import pandas as pd

    history = pd.DataFrame(history.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    return model, history, epochs, fit_seconds
