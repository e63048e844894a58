"""Knowledge distillation: train a small student against a trained teacher run (or several).

Loss per batch (MODELS.md, the paper's Eq. 4-5)::

    alpha * CRF_NLL(student emissions, labels)
      + (1 - alpha) * CCE(teacher target, softmax(student emissions))      # per step
      [ + feature_weight * MSE(P(student hidden), teacher hidden) ]        # method "features"

Teacher targets, computed once before training (never per epoch):

- ``viterbi`` (the paper): one-hot of the teacher's Viterbi path, ``[N, T, K]``.
- ``marginals``: the teacher CRF's posterior marginals ``p(y_t = k | x)`` by
  forward-backward - soft targets that keep the teacher's uncertainty between rooms.
- ``features``: the ``viterbi`` targets plus feature matching: the student's hidden states
  (the input of its emission head) are mapped by a learned linear projection ``P`` to the
  teacher's width and pulled towards the teacher's hidden states (standardised per channel
  on the training set, so the term's scale does not depend on the teacher family).
  ``P`` exists only during training; the saved student has the normal architecture.

An **ensemble teacher** is several runs (e.g. the same configuration trained with other
seeds): its ``viterbi`` target is the share of teachers whose Viterbi path says room ``k``
at step ``t``, its ``marginals`` target the mean of their marginals. ``features`` takes
one teacher (one projection per teacher width would be a different loss).

``distill_run`` writes the same run folder as ``train_run`` (the student's ``model.keras``
converts and deploys like any other), with the teacher and KD settings in ``config.json``
and ``metrics.json``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from tinyloc_tf.errors import TinylocError
from tinyloc_tf.training.artifacts import distinct_runs, load_run, read_metrics
from tinyloc_tf.training import trainer

METHODS = ("viterbi", "marginals", "features")


# --------------------------------------------------------------------------- the teacher


def load_teacher(teacher_run: str | os.PathLike):
    """``(teacher model, its config.json or {})`` from a run folder."""
    return load_run(teacher_run, what="teacher run")


def check_teacher(teacher, teacher_config: dict, data, teacher_run) -> None:
    """The teacher must have been trained on exactly this data (same shapes, same splits).

    A teacher trained on other splits may have seen this run's validation or test windows,
    which would leak them into the student through its targets.
    """
    build = getattr(teacher, "build_config", {}) or {}
    expected = {"features": data.num_features, "classes": data.num_classes, "steps": data.steps}
    for key, value in expected.items():
        if key in build and int(build[key]) != value:
            raise TinylocError(
                f"teacher {teacher_run} has {key}={build[key]}, but data {data.path} has {value}"
            )
    fingerprint = teacher_config.get("data_fingerprint")
    if fingerprint and fingerprint != data.fingerprint():
        raise TinylocError(
            f"teacher {teacher_run} was trained on other data (fingerprint {fingerprint[:12]}..., "
            f"this data {data.fingerprint()[:12]}...); distil on the teacher's own prepared folder"
        )


class HeadInputTap:
    """Records the tensor an encoder feeds its emission ``head`` layer.

    Both encoders end in ``self.head = Dense(H -> K)``; its input is the last hidden state
    ``[B, T, H]``. Keras 3 has no forward hooks, so this wraps the head's ``call`` on the
    instance (bypassing Keras' attribute tracking, which would otherwise treat the wrapper
    as a new sublayer) and restores it on :meth:`close`.
    """

    def __init__(self, tagger):
        head = getattr(getattr(tagger, "encoder", None), "head", None)
        if head is None:
            raise TinylocError(
                "method 'features' needs an encoder with a `head` layer (emission projection); "
                f"{type(getattr(tagger, 'encoder', tagger)).__name__} has none"
            )
        self.head = head
        self.captured = None
        original = head.call

        def call(inputs, *args, **kwargs):
            self.captured = inputs
            return original(inputs, *args, **kwargs)

        object.__setattr__(head, "call", call)

    @property
    def width(self) -> int:
        return int(self.head.kernel.shape[0])

    def close(self) -> None:
        self.head.__dict__.pop("call", None)


def compute_teacher_targets(teacher, X: np.ndarray, method: str, batch_size: int = 256) -> dict:
    """Everything the student learns from, computed in one pass over ``X [N, T, F]``.

    Returns ``{"soft": float32 [N, T, K]}`` and, for ``features``, ``"hidden": float32
    [N, T, H_teacher]`` standardised per channel.
    """
    import tensorflow as tf

    if method not in METHODS:
        raise TinylocError(f"unknown distillation method {method!r}; expected one of {', '.join(METHODS)}")
    tap = HeadInputTap(teacher) if method == "features" else None
    try:

        @tf.function(reduce_retracing=True)
        def teacher_pass(batch):
            emissions = teacher(batch, training=False)
            if method == "marginals":
                soft = teacher.crf.marginals(emissions)
            else:
                soft = tf.one_hot(teacher.crf.viterbi(emissions), teacher.crf.num_tags)
            hidden = tap.captured if tap is not None else tf.zeros((0,))
            return soft, hidden

        soft, hidden = [], []
        for start in range(0, len(X), batch_size):
            s, h = teacher_pass(tf.constant(X[start : start + batch_size]))
            soft.append(s.numpy())
            hidden.append(h.numpy())
    finally:
        if tap is not None:
            tap.close()
    targets = {"soft": np.concatenate(soft).astype(np.float32)}
    if method == "features":
        hidden = np.concatenate(hidden).astype(np.float32)
        mean = hidden.mean(axis=(0, 1), keepdims=True)
        std = hidden.std(axis=(0, 1), keepdims=True)
        targets["hidden"] = (hidden - mean) / np.maximum(std, 1e-6)
    return targets


# --------------------------------------------------------------------------- the trainer


def _distiller_class():
    """The Keras wrapper model, defined on first use (keeps module import TF-free)."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="tinyloc")
    class Distiller(keras.Model):
        """Trains ``student`` (a SequenceTagger) on labels and teacher targets.

        ``fit(x, {"labels": int [B, T], "soft": [B, T, K] (, "hidden": [B, T, H_t])})``.
        ``call(x)`` returns the student's emissions (and, with ``teacher_width``, its
        projected hidden states); the loss is in :meth:`compute_loss`, so Keras' own
        ``train_step`` does the gradient work.
        """

        def __init__(self, student, alpha=0.1, teacher_width=None, feature_weight=1.0, **kwargs):
            super().__init__(**kwargs)
            self.student = student
            self.alpha = float(alpha)
            self.feature_weight = float(feature_weight)
            self.teacher_width = None if teacher_width is None else int(teacher_width)
            self.tap = None
            self.projection = None
            if self.teacher_width is not None:
                self.tap = HeadInputTap(student)
                self.projection = keras.layers.Dense(self.teacher_width, use_bias=False, name="projection")
            self.nll_tracker = keras.metrics.Mean(name="nll")
            self.kd_tracker = keras.metrics.Mean(name="kd")
            self.feature_tracker = keras.metrics.Mean(name="feature") if self.projection is not None else None

        def build(self, input_shape):
            if self.projection is not None:
                self.projection.build((*input_shape[:-1], self.tap.width))
            self.built = True

        def call(self, x, training=None):
            emissions = self.student(x, training=training)
            if self.projection is None:
                return emissions
            return emissions, self.projection(self.tap.captured)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            emissions, projected = y_pred if self.projection is not None else (y_pred, None)
            nll = self.student.crf.nll(emissions, y["labels"])
            kd = ops.mean(keras.losses.categorical_crossentropy(y["soft"], emissions, from_logits=True))
            loss = self.alpha * nll + (1.0 - self.alpha) * kd
            self.nll_tracker.update_state(nll)
            self.kd_tracker.update_state(kd)
            if projected is not None:
                feature = ops.mean(ops.square(projected - y["hidden"]))
                loss = loss + self.feature_weight * feature
                self.feature_tracker.update_state(feature)
            for extra in self.losses:  # regularisers of the student, if any
                loss = loss + extra
            return loss

        def close(self):
            if self.tap is not None:
                self.tap.close()

        def get_config(self):
            return {
                "name": self.name,
                "student": keras.saving.serialize_keras_object(self.student),
                "alpha": self.alpha,
                "teacher_width": self.teacher_width,
                "feature_weight": self.feature_weight,
            }

        @classmethod
        def from_config(cls, config, custom_objects=None):
            config = dict(config)
            student = keras.saving.deserialize_keras_object(config.pop("student"), custom_objects=custom_objects)
            return cls(student=student, **config)

    return Distiller


# --------------------------------------------------------------------------- entry point


def teacher_list(teacher_run) -> list[Path]:
    """One run folder or several (an ensemble) as a list of distinct paths."""
    runs = distinct_runs([teacher_run] if isinstance(teacher_run, (str, os.PathLike)) else teacher_run,
                         what="teacher run")
    if not runs:
        raise TinylocError("distillation needs at least one teacher run")
    return runs


def ensemble_targets(teacher_runs: list[Path], data, method: str) -> tuple[dict, list[dict]]:
    """Targets averaged over the teachers, and what each teacher was (for ``config.json``).

    Teachers are loaded one at a time and freed after their pass over the training set.
    """
    if method == "features" and len(teacher_runs) > 1:
        raise TinylocError(
            f"method 'features' takes one teacher, got {len(teacher_runs)}; use viterbi or marginals for an ensemble"
        )
    total, described = None, []
    for run in teacher_runs:
        teacher, teacher_config = load_teacher(run)
        check_teacher(teacher, teacher_config, data, run)
        targets = compute_teacher_targets(teacher, data.train.X, method)
        metrics = read_metrics(run) or {}
        described.append({
            "run": str(run.absolute()),
            "build_config": dict(getattr(teacher, "build_config", {}) or {}),
            "params": trainer.count_params(teacher),
            "val_macro_f1": metrics.get("val_macro_f1"),
        })
        del teacher  # targets are all the student needs; free the (possibly large) teacher
        if total is None:
            total = targets
        else:
            total["soft"] += targets["soft"]
    total["soft"] /= len(teacher_runs)
    return total, described


def distill_run(
    teacher_run,
    data_dir: str | os.PathLike,
    family: str,
    hidden: int,
    layers: int,
    out: str | os.PathLike,
    *,
    alpha: float = 0.1,
    method: str = "viterbi",
    feature_weight: float = 1.0,
    epochs: int = trainer.DEFAULTS["epochs"],
    batch_size: int = trainer.DEFAULTS["batch_size"],
    lr: float = trainer.DEFAULTS["lr"],
    patience: int = trainer.DEFAULTS["patience"],
    seed: int = trainer.DEFAULTS["seed"],
    int8_friendly: bool = False,
    recipe=None,
    overwrite: bool = False,
    verbose: int = 1,
) -> dict:
    """Distil the model of ``teacher_run`` into a new ``family`` H``hidden`` L``layers`` student.

    ``teacher_run`` is one run folder, or a list of them for an ensemble teacher.

    Same selection and outputs as :func:`tinyloc_tf.training.trainer.train_run` (best epoch
    by validation macro-F1 of the student's Viterbi path, test scored once at the end).
    Returns the ``metrics.json`` dict, which adds a ``distill`` section.
    """
    started = time.perf_counter()
    trainer.check_family(family)
    trainer.check_training_args(hidden, layers, epochs, batch_size, lr, patience)
    if method not in METHODS:
        raise TinylocError(f"unknown distillation method {method!r}; expected one of {', '.join(METHODS)}")
    if not 0.0 <= alpha <= 1.0:
        raise TinylocError(f"--alpha must be in [0, 1], got {alpha}")
    if feature_weight < 0:
        raise TinylocError(f"--feature-weight must be 0 or more, got {feature_weight}")
    teacher_runs = teacher_list(teacher_run)
    out = trainer.check_out(out, overwrite, inputs=(*teacher_runs, data_dir))
    data = trainer.load_data(data_dir)

    from tinyloc_tf.models import build_model
    from tinyloc_tf.training.recipe import Recipe

    recipe = recipe if recipe is not None else Recipe()
    recipe.check_distillation()
    targets, teachers = ensemble_targets(teacher_runs, data, method)
    teacher_width = targets["hidden"].shape[-1] if method == "features" else None

    trainer.seed_everything(seed)
    student = build_model(
        family, features=data.num_features, classes=data.num_classes, hidden=int(hidden),
        layers=int(layers), steps=data.steps, int8_friendly=bool(int8_friendly),
        augmentation=recipe.augmentation(data.meta["scaling"], seed), **recipe.family_options(),
    )
    distiller = _distiller_class()(student, alpha=alpha, teacher_width=teacher_width, feature_weight=feature_weight)
    distiller.build((None, data.steps, data.num_features))
    distiller.compile(optimizer=recipe.optimizer(lr, epochs, trainer.steps_per_epoch(len(data.train), batch_size)))
    y = {"labels": data.train.y, **targets}
    try:
        history, best_epoch, epochs_run, fit_seconds = trainer.fit_with_validation(
            distiller, student, data.train.X, y, (data.val.X, data.val.y),
            epochs=epochs, batch_size=batch_size, patience=patience, verbose=verbose,
            desc=f"distil {method} -> {family} H{hidden}L{layers}",
        )
    finally:
        distiller.close()

    scores = trainer.score_splits(student, data)
    metrics = trainer.run_metrics(
        student, data, scores, best_epoch=best_epoch, epochs_run=epochs_run,
        fit_seconds=fit_seconds, started=started, seed=seed,
    )
    # One teacher: its fields as strings and numbers; an ensemble: one list entry per teacher.
    one = len(teachers) == 1
    distill_settings = {
        f"teacher_{key}": teachers[0][key] if one else [t[key] for t in teachers]
        for key in ("run", "build_config", "params", "val_macro_f1")
    }
    distill_settings.update({
        "method": method,
        "alpha": alpha,
        "feature_weight": feature_weight if method == "features" else None,
    })
    metrics["distill"] = distill_settings
    config = trainer.run_config(
        "distill", student, data_dir, metrics,
        epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, seed=seed,
        int8_friendly=bool(int8_friendly), recipe=recipe.to_dict(),
        loss="alpha*crf_nll + (1-alpha)*cce(teacher, softmax(emissions))"
        + (" + feature_weight*mse(projection(student hidden), teacher hidden)" if method == "features" else ""),
    )
    config["distill"] = distill_settings
    trainer.write_run(out, student, history, config, metrics, overwrite=overwrite)
    return metrics
