"""MLP: a per-sample multilayer perceptron, the fingerprinting baseline as a tinyloc family.

Every time step is mapped on its own; the CRF head (:class:`~tinyloc_tf.models.crf.CRF`)
adds the only temporal context. Where a sample is one scan (UJIIndoorLoc, ``T = 1``) this is
the standard Wi-Fi fingerprinting network; on windows it is a tagger without memory.

``[B, T, F]`` RSSI -> ``L x (Dense(H), ReLU, Dropout)`` -> ``Dense(H->K)`` emissions
``[B, T, K]``.

Why it is here: at a fixed flash budget it spends every parameter on the input layer's width,
which is what a scan of hundreds of access points needs (a 32 KiB int8 model can be
``520 -> 48 -> 59``), where MDCSA and Mamba spend most of theirs on machinery for time.
Every op (FULLY_CONNECTED with a fused ReLU) has an int8 kernel in TFLM and in the AOT
backend, so ``int8_friendly`` changes nothing.

Parameters (what Keras counts)::

    F*H+H + (L-1)*(H*H+H) + H*K+K                (+ K*K+2K for the CRF, in the tagger)
"""

from __future__ import annotations

import keras

from tinyloc_tf.models.layers import checked_rate, checked_sizes

register = keras.saving.register_keras_serializable(package="tinyloc")


@register
class MLPEncoder(keras.layers.Layer):
    """RSSI samples to CRF emissions, each step on its own: ``[B, T, F] -> [B, T, K]``.

    ``hidden`` H is the width of each of the ``layers`` L hidden layers; ``dropout`` follows
    each of them (training only). ``steps`` is accepted for the family interface and unused:
    the weights fit any window length.
    """

    def __init__(
        self,
        features: int,
        classes: int,
        hidden: int,
        layers: int,
        steps: int,
        int8_friendly: bool = False,
        dropout: float = 0.3,
        **kwargs,
    ):
        super().__init__(**kwargs)
        sizes = checked_sizes("MLP", features=features, classes=classes, hidden=hidden, layers=layers, steps=steps)
        self.features, self.classes, self.hidden = sizes["features"], sizes["classes"], sizes["hidden"]
        self.num_layers, self.steps = sizes["layers"], sizes["steps"]
        self.int8_friendly = bool(int8_friendly)
        self.dropout = checked_rate("MLP", "dropout", dropout)
        self.dense = [keras.layers.Dense(self.hidden, activation="relu", name=f"dense_{i}")
                      for i in range(self.num_layers)]
        self.drops = [keras.layers.Dropout(self.dropout) for _ in range(self.num_layers)]
        self.head = keras.layers.Dense(self.classes, name="head")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for dense in self.dense:
            dense.build(shape)
            shape = (*shape[:-1], self.hidden)
        self.head.build(shape)

    def call(self, x, training=None):
        for dense, drop in zip(self.dense, self.drops):
            x = drop(dense(x), training=training)
        return self.head(x)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.classes)

    def get_config(self):
        return {
            **super().get_config(),
            "features": self.features,
            "classes": self.classes,
            "hidden": self.hidden,
            "layers": self.num_layers,
            "steps": self.steps,
            "int8_friendly": self.int8_friendly,
            "dropout": self.dropout,
        }
