"""A linear shortcut: the raw input's own linear map added to an encoder's emissions.

::

    emissions = encoder(x) + x @ W + b          # [B, T, F] -> [B, T, K];  W: [F, K], b: [K]

The "wide" half of a wide-and-deep model (Cheng et al., 2016). An encoder squeezes a scan of F
access points through H hidden units; with fewer units than rooms (UJIIndoorLoc: 520 APs,
59 areas, H = 16) that bottleneck cannot hold one template per room, which a linear model over
the whole scan does (the logistic-regression baseline). The shortcut gives the encoder that
linear path at F*K + K parameters (``param_counts.shortcut_param_count``), in the ``.tflite``
one FULLY_CONNECTED and one ADD.
(Streaming step models are not built for it: ``mamba_step.step_encoder`` says so.)
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="tinyloc")
class LinearShortcut(keras.layers.Layer):
    """``encoder(x) + Dense(K)(x)``: ``[B, T, F] -> [B, T, K]``, ``K`` the encoder's classes.

    ``head`` is the encoder's own (what feature distillation taps); ``encoder`` the wrapped one.
    """

    def __init__(self, encoder: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.classes = int(encoder.classes)
        self.shortcut = keras.layers.Dense(self.classes, name="shortcut")

    @property
    def head(self):
        return self.encoder.head

    def build(self, input_shape):
        if not self.encoder.built:
            self.encoder.build(input_shape)
        self.shortcut.build(input_shape)

    def call(self, x, training=None):
        return self.encoder(x, training=training) + self.shortcut(x)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.classes)

    def get_config(self):
        return {**super().get_config(), "encoder": keras.saving.serialize_keras_object(self.encoder)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        encoder = keras.saving.deserialize_keras_object(config.pop("encoder"), custom_objects=custom_objects)
        return cls(encoder=encoder, **config)
