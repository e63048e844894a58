"""RSSI augmentation: training-time perturbations of the model input, in dBm.

``RSSIAugmentation`` sits in front of the encoder inside :class:`SequenceTagger` and acts only
when Keras calls the model with ``training=True`` (``fit``). At inference it returns its input
unchanged, and the converter exports ``tagger.encoder`` alone, so no augmentation op ever
reaches a ``.tflite``.

The inputs are in the dataset's representation (``tinyloc_tf.data.representation``); the layer
maps them back to dBm, perturbs them there, and maps them forward again, so each flag is in
physical units whatever the representation. Per scan (T = 1) or per window (T > 1):

- ``ap_dropout`` p: each heard reading becomes "not heard" with probability p (an access
  point missed by a scan);
- ``noise_db`` sigma: Gaussian noise on every heard reading;
- ``gain_db`` g: one offset uniform in [-g, g] dB added to every heard reading of a scan or
  window (another phone's or wearable's antenna gain);
- ``slope`` a: one factor uniform in [1 - a, 1 + a] per scan or window that stretches or
  compresses every heard reading's distance below the scan's strongest (receivers differ in
  the slope of their RSSI response, not only in its offset; the strongest reading stays put,
  so this is what ``gain_db`` does not already cover);
- ``sensitivity_db`` s: one detection threshold uniform in [floor, floor + s] dBm per scan or
  window; a reading at or below it after the gain offset and the noise is not heard (another
  receiver's sensitivity: a weaker radio loses the faintest access points, where AP dropout
  loses any of them alike; with ``relative`` inputs the threshold applies to the readings as
  the representation moved them);
- ``packet_drop`` q (windows only): each step is lost with probability q and takes the value
  of the step before, as the loaders' forward fill does;
- ``time_shift`` s (windows only): the RSSI of a window moves by k in [-s, s] steps against
  its labels, edges repeated (annotation lag).

Apart from ``sensitivity_db``, a heard reading stays heard (it is clipped to [floor + 1, 0] dBm);
not-heard cells stay 0.
For the ``relative`` representation the perturbed scan is moved back so that its strongest
reading sits at the reference again (a gain offset then changes nothing, as on the device),
and a reading that falls to the floor counts as not heard, as in the prepared data.
"""

from __future__ import annotations

import keras
from keras import ops

from tinyloc_tf.errors import TinylocError

AUGMENTATION_FLAGS = ("ap_dropout", "noise_db", "gain_db", "slope", "sensitivity_db", "packet_drop", "time_shift")


@keras.saving.register_keras_serializable(package="tinyloc")
class RSSIAugmentation(keras.layers.Layer):
    """``[b, T, F] -> [b, T, F]``; identity unless ``training``.

    Args:
        scaling: the prepared data's ``meta["scaling"]`` (representation, floor, min/max).
        ap_dropout, noise_db, gain_db, slope, sensitivity_db, packet_drop, time_shift: see the module
            docstring.
        seed: seed of the layer's random stream.
    """

    def __init__(self, scaling: dict, ap_dropout=0.0, noise_db=0.0, gain_db=0.0, slope=0.0,
                 sensitivity_db=0.0, packet_drop=0.0, time_shift=0, seed=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("ap_dropout", ap_dropout), ("slope", slope), ("packet_drop", packet_drop)):
            if not 0.0 <= float(value) < 1.0:
                raise TinylocError(f"augmentation {name} must be in [0, 1), got {value}")
        for name, value in (("noise_db", noise_db), ("gain_db", gain_db), ("sensitivity_db", sensitivity_db),
                            ("time_shift", time_shift)):
            if float(value) < 0:
                raise TinylocError(f"augmentation {name} must be 0 or more, got {value}")
        # Only what maps inputs to dBm and back (meta["scaling"] carries counts too).
        self.scaling = {key: scaling[key] for key in ("representation", "not_heard_dbm", "exponent", "reference_dbm",
                                                      "min", "max") if key in scaling}
        self.kind = self.scaling.get("representation", "minmax")
        self.floor = float(self.scaling.get("not_heard_dbm", -105.0))
        self.exponent = float(self.scaling.get("exponent", 1.0))
        self.reference = float(self.scaling.get("reference_dbm", 0.0))
        self.ap_dropout, self.noise_db, self.gain_db = float(ap_dropout), float(noise_db), float(gain_db)
        self.slope, self.sensitivity_db = float(slope), float(sensitivity_db)
        self.packet_drop, self.time_shift = float(packet_drop), int(time_shift)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        if self.kind == "minmax":
            self.minimum = ops.convert_to_tensor(self.scaling["min"], dtype="float32")
            self.span = ops.convert_to_tensor(self.scaling["max"], dtype="float32") - self.minimum

    @property
    def active(self) -> bool:
        return any(getattr(self, name) for name in AUGMENTATION_FLAGS)

    # representation <-> dBm (the inverse of data.representation.Representation.apply)
    def _to_dbm(self, x):
        if self.kind == "minmax":
            return self.minimum + x * self.span
        if self.kind in ("powed", "relative"):
            x = ops.power(ops.maximum(x, 1e-12), 1.0 / self.exponent)
        return self.floor + x * (-self.floor)

    def _from_dbm(self, dbm):
        if self.kind == "minmax":
            return ops.clip((dbm - self.minimum) / self.span, 0.0, 1.0)
        x = ops.clip((dbm - self.floor) / (-self.floor), 0.0, 1.0)
        return ops.power(x, self.exponent) if self.kind in ("powed", "relative") else x

    def _relative_to_strongest(self, dbm, heard):
        """``relative``: the perturbed scan's strongest heard reading back at the reference, as
        :meth:`~tinyloc_tf.data.representation.Representation.relative_to_strongest` does."""
        strongest = self._strongest(dbm, heard)
        return ops.where(strongest > -1e8, dbm + (self.reference - strongest), dbm)

    @staticmethod
    def _strongest(dbm, heard):
        """``[b, T, 1]``: each scan's strongest heard reading, -1e9 where it heard nothing."""
        return ops.max(ops.where(heard, dbm, ops.full_like(dbm, -1e9)), axis=-1, keepdims=True)

    def call(self, x, training=None):
        if not training or not self.active:
            return x
        shape = ops.shape(x)
        heard = x > 0.0
        if self.ap_dropout:
            heard = ops.logical_and(heard, keras.random.uniform(shape, seed=self.seed_generator) >= self.ap_dropout)
        dbm = self._to_dbm(x)
        if self.slope:
            strongest = self._strongest(dbm, heard)
            factor = keras.random.uniform((shape[0], 1, 1), 1.0 - self.slope, 1.0 + self.slope,
                                          seed=self.seed_generator)
            dbm = ops.where(strongest > -1e8, strongest - factor * (strongest - dbm), dbm)
        if self.gain_db:
            dbm = dbm + keras.random.uniform((shape[0], 1, 1), -self.gain_db, self.gain_db, seed=self.seed_generator)
        if self.noise_db:
            dbm = dbm + self.noise_db * keras.random.normal(shape, seed=self.seed_generator)
        if self.sensitivity_db:
            threshold = self.floor + keras.random.uniform((shape[0], 1, 1), 0.0, self.sensitivity_db,
                                                          seed=self.seed_generator)
            heard = ops.logical_and(heard, dbm > threshold)
        if self.kind == "relative":
            # A gain offset leaves a relative scan as it was; noise and dropout move its strongest
            # reading. Readings at or below the floor after the move are not heard (_from_dbm: 0).
            dbm = self._relative_to_strongest(dbm, heard)
        else:
            dbm = ops.clip(dbm, self.floor + 1.0, 0.0)
        out = ops.where(heard, self._from_dbm(dbm), ops.zeros_like(x))
        steps = x.shape[1]
        if steps and steps > 1 and self.packet_drop:
            dropped = keras.random.uniform((shape[0], steps, 1), seed=self.seed_generator) < self.packet_drop
            rows = [out[:, 0]]
            for t in range(1, steps):  # forward fill: a lost step repeats the (filled) step before
                rows.append(ops.where(dropped[:, t], rows[-1], out[:, t]))
            out = ops.stack(rows, axis=1)
        if steps and steps > 1 and self.time_shift:
            shift = keras.random.randint((shape[0], 1), -self.time_shift, self.time_shift + 1, seed=self.seed_generator)
            index = ops.clip(ops.arange(steps)[None, :] + shift, 0, steps - 1)
            out = ops.take_along_axis(out, ops.expand_dims(index, -1), axis=1)
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(scaling=self.scaling, ap_dropout=self.ap_dropout, noise_db=self.noise_db,
                      gain_db=self.gain_db, slope=self.slope, sensitivity_db=self.sensitivity_db, packet_drop=self.packet_drop,
                      time_shift=self.time_shift, seed=self.seed)
        return config
