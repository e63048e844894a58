"""Conversion refuses what would silently produce a mislabelled model."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tinyloc_tf.compression import convert as conv
from tinyloc_tf.errors import TinylocError


def test_a_calibration_set_of_no_windows_is_refused():
    X = np.random.default_rng(0).uniform(size=(8, 4, 3)).astype(np.float32)
    with pytest.raises(TinylocError, match="at least 1 window"):
        conv.representative_subset(X, 0)
    assert conv.representative_subset(X, 3).shape == (3, 4, 3)


def test_a_float_model_is_not_accepted_as_int8():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    buf = conv.convert_float32(model, None, {})[0]
    with pytest.raises(TinylocError, match="FLOAT32 model input, not int8"):
        conv._check_int8_io(buf, "int8")
