"""An ensemble encoder: several independently trained encoders whose emissions are averaged.

::

    emissions = (member_0(x) + member_1(x) + ... + member_{N-1}(x)) / N      # [B, T, K]

Each member is a whole encoder of one family (e.g. MDCSA H16L1 trained with seeds 0, 1, 2).
With the members' CRF weights averaged too, the ensemble's path score is the mean of the
members' path scores: a product of the members' CRF distributions (a geometric mean),
itself a linear-chain CRF over the same tags, so it converts, decodes and deploys like any
single model. The mean is written as ADD and MUL, which every runtime here has (TFLM and
the AOT C lack PACK, which a stack-and-mean would need).

Members are trained apart (``tinyloc ensemble`` assembles finished runs): trained jointly
through one averaged loss they would not make independent errors, which is what an
ensemble averages away.
"""

from __future__ import annotations

import keras

from tinyloc_tf.errors import TinylocError


@keras.saving.register_keras_serializable(package="tinyloc")
class EnsembleEncoder(keras.layers.Layer):
    """Mean of ``members``' outputs: each ``[B, T, F] -> [B, T, K]``, so is the ensemble."""

    def __init__(self, members, **kwargs):
        super().__init__(**kwargs)
        members = list(members)
        if len(members) < 2:
            raise TinylocError(f"an ensemble needs at least two members, got {len(members)}")
        self.members = members

    def build(self, input_shape):
        for member in self.members:
            if not member.built:
                member.build(input_shape)

    def call(self, x, training=None):
        total = self.members[0](x, training=training)
        for member in self.members[1:]:
            total = total + member(x, training=training)
        return total * (1.0 / len(self.members))

    def compute_output_shape(self, input_shape):
        return self.members[0].compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(),
                "members": [keras.saving.serialize_keras_object(member) for member in self.members]}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        members = [keras.saving.deserialize_keras_object(m, custom_objects=custom_objects)
                   for m in config.pop("members")]
        return cls(members=members, **config)
