"""The sequence tagger (encoder + CRF) every model family shares, and ``build_model``.

::

    model = build_model("mdcsa", features=8, classes=4, hidden=16, layers=1, steps=20)
    model.compile(optimizer="adam")          # the loss is the CRF NLL
    model.fit(X, y)                          # X float32 [N, T, F], y int32 [N, T]
    model.decode(X)                          # Viterbi paths, int32 [N, T]

``model.encoder`` is the part that becomes the ``.tflite`` (``[B, T, F] -> [B, T, K]``);
``model.crf`` holds the transition scores that the host or the MCU uses to decode.
"""

from __future__ import annotations

import keras
import numpy as np

from tinyloc_tf.decoding import viterbi_decode
from tinyloc_tf.errors import TinylocError
from tinyloc_tf.families import get_family
from tinyloc_tf.models.crf import CRF


@keras.saving.register_keras_serializable(package="tinyloc")
class SequenceTagger(keras.Model):
    """An encoder producing CRF emissions, and the CRF that scores and decodes them.

    ``call(x)``: ``[B, T, F] -> [B, T, K]`` emissions. Without a compiled loss,
    ``compute_loss`` is the CRF negative log-likelihood of ``y`` (int ``[B, T]``).
    ``augmentation`` (optional, e.g. :class:`~tinyloc_tf.models.augmentation.RSSIAugmentation`)
    perturbs the input in training only; it is not part of the encoder, so never converted.
    """

    def __init__(self, encoder: keras.layers.Layer, crf: CRF, build_kwargs: dict | None = None,
                 augmentation: keras.layers.Layer | None = None, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.crf = crf
        self.augmentation = augmentation
        self._build_kwargs = dict(build_kwargs or {})

    @property
    def build_config(self) -> dict:
        """The ``build_model`` keyword arguments that rebuild this architecture."""
        return dict(self._build_kwargs)

    def build(self, input_shape):
        # On load, Keras rebuilds the encoder and CRF from their own configs first.
        if not self.encoder.built:
            self.encoder.build(input_shape)
        if not self.crf.built:
            self.crf.build(self.encoder.compute_output_shape(input_shape))

    def call(self, x, training=None):
        if training and self.augmentation is not None:
            x = self.augmentation(x, training=True)
        return self.crf(self.encoder(x, training=training))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if self._compile_loss is not None or y is None:
            return super().compute_loss(x, y, y_pred, sample_weight, training)
        loss = self.crf.nll(y_pred, y, sample_weight=sample_weight)
        for extra in self.losses:
            loss = loss + self._aggregate_additional_loss(extra)
        return loss

    def emissions(self, x, batch_size: int = 1024) -> np.ndarray:
        """CRF emissions float32 ``[N, T, K]`` for ``x`` float ``[N, T, F]`` (inference mode).

        Runs eagerly, in batches of ``batch_size`` windows. Keras' ``predict`` would trace a
        graph for every model (and retrace for each remainder batch size): a sweep that
        scores dozens of models each epoch then fills its log with retracing warnings, and
        for models this small a traced graph saves nothing at this batch size.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3:
            raise TinylocError(f"expected windows [N, T, F], got shape {x.shape}")
        if len(x) == 0:
            return np.zeros((0, x.shape[1], self.crf.num_tags), dtype=np.float32)
        size = max(1, int(batch_size))
        return np.concatenate([keras.ops.convert_to_numpy(self(x[i : i + size], training=False)).astype(np.float32)
                               for i in range(0, len(x), size)])

    def decode(self, x, batch_size: int = 1024) -> np.ndarray:
        """Viterbi paths for ``x`` float ``[N, T, F]`` -> int32 ``[N, T]`` (inference mode).

        Emissions come from :meth:`emissions`; the path from
        :func:`~tinyloc_tf.decoding.viterbi_decode`, which gives exactly the paths of the
        graph :meth:`CRF.viterbi` (tested) and is what decodes TFLM's emissions too.
        """
        emissions = self.emissions(x, batch_size)
        if len(emissions) == 0:
            return np.zeros(emissions.shape[:2], dtype=np.int32)
        return viterbi_decode(emissions, *self.crf.get_weights())

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "crf": keras.saving.serialize_keras_object(self.crf),
            "build_kwargs": self._build_kwargs,
            **({"augmentation": keras.saving.serialize_keras_object(self.augmentation)}
               if self.augmentation is not None else {}),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"), custom_objects=custom_objects)
        crf = keras.saving.deserialize_keras_object(config.pop("crf"), custom_objects=custom_objects)
        augmentation = config.pop("augmentation", None)
        if augmentation is not None:
            from tinyloc_tf.models import augmentation as _register  # noqa: F401  (registers the class)

            augmentation = keras.saving.deserialize_keras_object(augmentation, custom_objects=custom_objects)
        return cls(encoder=encoder, crf=crf, augmentation=augmentation, **config)


def build_model(
    family: str,
    *,
    features: int,
    classes: int,
    hidden: int,
    layers: int,
    steps: int,
    int8_friendly: bool = False,
    augmentation: keras.layers.Layer | None = None,
    members: int = 1,
    shortcut: bool = False,
    **family_options,
) -> SequenceTagger:
    """Build and initialise a :class:`SequenceTagger` of the given family.

    ``features`` F, ``classes`` K, ``hidden`` H, ``layers`` L, ``steps`` T (window length);
    ``int8_friendly`` selects formulations TFLM can run fully in int8 where the exact maths
    cannot (Mamba). ``family_options`` go to the encoder (MDCSA: ``dropout``,
    ``head_dropout``; Mamba: ``dropout``). ``augmentation``: a training-time input layer
    (:class:`SequenceTagger`). ``members`` N > 1: an ensemble of N such encoders whose
    emissions are averaged (:class:`~tinyloc_tf.models.ensemble.EnsembleEncoder`; its
    weights come from N trained runs, ``tinyloc ensemble``). ``shortcut``: each encoder gets a
    linear map of the input added to its emissions
    (:class:`~tinyloc_tf.models.shortcut.LinearShortcut`, ``F*K + K`` parameters). The model
    is built for inputs ``[None, T, F]``.
    """
    spec = get_family(family)
    family, encoder_class = spec.name, spec.encoder_class()
    sizes = {"features": features, "classes": classes, "hidden": hidden, "layers": layers, "steps": steps}
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise TinylocError(f"build_model({family!r}): {name} must be a positive integer, got {value!r}")
    sizes = {name: int(value) for name, value in sizes.items()}
    if isinstance(members, bool) or not isinstance(members, (int, np.integer)) or members < 1:
        raise TinylocError(f"build_model({family!r}): members must be a positive integer, got {members!r}")
    encoders = []
    for index in range(int(members)):
        name = "encoder" if members == 1 else f"member_{index}"
        try:
            encoder = encoder_class(**sizes, int8_friendly=bool(int8_friendly), name=name, **family_options)
        except (TypeError, ValueError) as exc:  # unknown or ill-typed family options
            raise TinylocError(f"build_model({family!r}): bad option: {exc}") from exc
        if not isinstance(getattr(encoder, "head", None), keras.layers.Layer):
            raise TinylocError(f"model family {family!r}: its encoder must end in a layer named `head` "
                               "(tinyloc_tf/families.py)")
        if shortcut:
            from tinyloc_tf.models.shortcut import LinearShortcut

            encoder = LinearShortcut(encoder, name=name)
        encoders.append(encoder)
    build_kwargs = {"family": family, **sizes, "int8_friendly": bool(int8_friendly), **family_options}
    if shortcut:  # only when on, so the configs of runs without one read as before
        build_kwargs["shortcut"] = True
    if members > 1:
        from tinyloc_tf.models.ensemble import EnsembleEncoder

        encoder = EnsembleEncoder(encoders, name="encoder")
        build_kwargs["members"] = int(members)
    model = SequenceTagger(encoder, CRF(sizes["classes"], name="crf"), build_kwargs, augmentation=augmentation,
                           name=f"{family}_tagger" if members == 1 else f"{family}_ensemble_tagger")
    model.build((None, sizes["steps"], sizes["features"]))
    return model


def ensemble_of(taggers: list) -> SequenceTagger:
    """An ensemble ``SequenceTagger`` with the members' encoder weights and their mean CRF.

    Every tagger must have the same ``build_config`` (family, sizes, options).
    """
    if len(taggers) < 2:
        raise TinylocError(f"an ensemble needs at least two runs, got {len(taggers)}")
    builds = [dict(t.build_config) for t in taggers]
    if any(b.get("members", 1) != 1 for b in builds):
        raise TinylocError("an ensemble's members must be single models, not ensembles")
    first = builds[0]
    for index, build in enumerate(builds[1:], start=1):
        if build != first:
            differ = sorted(k for k in set(build) | set(first) if build.get(k) != first.get(k))
            raise TinylocError(f"member {index} is another architecture than member 0 "
                               f"({', '.join(f'{k}: {first.get(k)} vs {build.get(k)}' for k in differ)})")
    build = dict(first)
    family = build.pop("family")
    model = build_model(family, **build, members=len(taggers))
    for member, tagger in zip(model.encoder.members, taggers):
        member.set_weights(tagger.encoder.get_weights())
    crf_weights = [t.crf.get_weights() for t in taggers]
    model.crf.set_weights([np.mean([w[i] for w in crf_weights], axis=0) for i in range(len(crf_weights[0]))])
    return model
