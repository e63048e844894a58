"""RSSIAugmentation: shapes, training only, physical units, and never in a .tflite."""

import numpy as np
import pytest

from tinyloc_tf.data.representation import Representation
from tinyloc_tf.models.augmentation import RSSIAugmentation

FLOOR = -105.0
POWED = Representation("powed", FLOOR, exponent=np.e).to_meta()
DBM = Representation("dbm", FLOOR).to_meta()
RELATIVE = Representation("relative", FLOOR, exponent=np.e, reference_dbm=-60.0)


def _inputs(steps=1, n=64, features=20, seed=0):
    rng = np.random.default_rng(seed)
    dbm = np.where(rng.random((n, steps, features)) < 0.4, rng.integers(-100, -30, (n, steps, features)), FLOOR)
    return ((dbm - FLOOR) / -FLOOR).astype(np.float32), dbm


def _to_dbm(x):
    return FLOOR + np.asarray(x) * -FLOOR


@pytest.mark.parametrize("scaling", [POWED, DBM, RELATIVE.to_meta()], ids=["powed", "dbm", "relative"])
def test_identity_at_inference_and_same_shape(scaling):
    x, _ = _inputs(steps=5)
    layer = RSSIAugmentation(scaling, ap_dropout=0.3, noise_db=3, gain_db=6, slope=0.2, sensitivity_db=10,
                             packet_drop=0.2, time_shift=2, seed=1)
    for training in (None, False):
        np.testing.assert_array_equal(np.asarray(layer(x, training=training)), x)
    out = np.asarray(layer(x, training=True))
    assert out.shape == x.shape and out.dtype == np.float32
    assert not np.array_equal(out, x)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_ap_dropout_only_silences_heard_readings():
    x, _ = _inputs(n=400)
    out = np.asarray(RSSIAugmentation(DBM, ap_dropout=0.25, seed=0)(x, training=True))
    heard = x > 0
    assert np.all(out[~heard] == 0)  # not heard stays not heard
    kept = out[heard] > 0
    np.testing.assert_allclose(out[heard][kept], x[heard][kept], atol=1e-6)  # the rest unchanged
    assert 0.2 < 1 - kept.mean() < 0.3


def test_gain_is_one_offset_per_scan_in_db():
    x, dbm = _inputs(n=200)
    out = np.asarray(RSSIAugmentation(DBM, gain_db=6.0, seed=3)(x, training=True))
    shift = _to_dbm(out) - dbm
    heard = (x > 0) & (dbm < -40) & (dbm > -95)  # away from the clip at both ends
    for row in range(len(x)):
        values = shift[row][heard[row]]
        if values.size:
            assert np.ptp(values) < 1e-3 and abs(values[0]) <= 6.0 + 1e-4
    assert np.std([shift[r][heard[r]][0] for r in range(len(x)) if heard[r].any()]) > 1.0


def test_slope_scales_distances_below_the_strongest_reading_per_scan():
    """One factor in [1 - a, 1 + a] per scan on every reading's distance below the scan's
    strongest: the strongest stays put, nothing heard is lost, and scans draw different factors."""
    x, dbm = _inputs(n=200)
    out = np.asarray(RSSIAugmentation(DBM, slope=0.3, seed=2)(x, training=True))
    heard = x > 0
    assert np.all(out[~heard] == 0) and np.all(out[heard] > 0)
    back = _to_dbm(out)
    factors = []
    for row in range(len(x)):
        h = heard[row]
        if h.sum() < 2:
            continue
        top = dbm[row][h].max()
        np.testing.assert_allclose(back[row][h].max(), top, atol=1e-3)
        gap = top - dbm[row][h]
        moved = top - back[row][h]
        inside = (gap > 0) & (back[row][h] > FLOOR + 1.0 + 1e-3)  # away from the clip at the floor
        if inside.any():
            ratio = moved[inside] / gap[inside]
            assert np.ptp(ratio) < 1e-3 and 0.7 - 1e-4 <= ratio[0] <= 1.3 + 1e-4
            factors.append(ratio[0])
    assert np.std(factors) > 0.1


def test_sensitivity_loses_the_weakest_readings_of_a_scan():
    """One threshold per scan in [floor, floor + s]: what it keeps is unchanged and stronger than
    all it loses, and only heard readings near the floor are lost."""
    x, dbm = _inputs(n=300)
    powed = (x ** np.e).astype(np.float32)
    out = np.asarray(RSSIAugmentation(POWED, sensitivity_db=20.0, seed=6)(powed, training=True))
    heard = x > 0
    assert np.all(out[~heard] == 0)
    lost = heard & (out == 0)
    kept = heard & (out > 0)
    np.testing.assert_allclose(out[kept], powed[kept], rtol=1e-5)
    assert lost.any() and not np.any(lost & (dbm > FLOOR + 20.0))
    for row in range(len(x)):
        if lost[row].any() and kept[row].any():
            assert dbm[row][lost[row]].max() < dbm[row][kept[row]].min()
    thresholds = [dbm[r][lost[r]].max() for r in range(len(x)) if lost[r].any()]
    assert np.ptp(thresholds) > 5.0  # per scan, not one for all


def test_noise_is_in_db_whatever_the_representation():
    x, dbm = _inputs(n=400)
    powed = (x ** np.e).astype(np.float32)
    out = np.asarray(RSSIAugmentation(POWED, noise_db=2.0, seed=5)(powed, training=True))
    back = FLOOR + out ** (1 / np.e) * -FLOOR
    heard = (x > 0) & (dbm < -40) & (dbm > -95)
    assert np.std(back[heard] - dbm[heard]) == pytest.approx(2.0, rel=0.1)


def test_relative_augmentation_stays_relative():
    """A perturbed relative scan has its strongest reading back at the reference, and a gain
    offset alone changes nothing (the representation does not see it)."""
    _, dbm = _inputs(n=300)
    x, _ = RELATIVE.apply(dbm)
    gain = np.asarray(RSSIAugmentation(RELATIVE.to_meta(), gain_db=6.0, seed=3)(x, training=True))
    np.testing.assert_allclose(gain, x, atol=1e-5)
    out = np.asarray(RSSIAugmentation(RELATIVE.to_meta(), ap_dropout=0.2, noise_db=3.0, seed=1)(x, training=True))
    assert not np.allclose(out, x, atol=1e-3)
    top = RELATIVE.apply(np.array([-60.0]))[0][0]  # the reference's input value
    rows = (out > 0).any(axis=-1)
    np.testing.assert_allclose(out.max(axis=-1)[rows], top, rtol=1e-4)


def test_packet_drop_forward_fills_whole_steps():
    x, _ = _inputs(steps=10, n=50)
    out = np.asarray(RSSIAugmentation(DBM, packet_drop=0.5, seed=2)(x, training=True))
    for window in range(len(x)):
        for t in range(10):  # every step is its own input or the (filled) step before it
            assert np.array_equal(out[window, t], x[window, t]) or np.array_equal(out[window, t], out[window, t - 1])
    assert np.array_equal(out[:, 0], x[:, 0])


def test_time_shift_moves_windows_against_labels():
    x, _ = _inputs(steps=8, n=40)
    out = np.asarray(RSSIAugmentation(DBM, time_shift=2, seed=4)(x, training=True))
    shifts = []
    for window in range(len(x)):
        found = [k for k in range(-2, 3)
                 if np.array_equal(out[window], x[window][np.clip(np.arange(8) + k, 0, 7)])]
        assert found
        shifts.append(found[0])
    assert len(set(shifts)) > 1


def test_bad_flags_are_refused():
    from tinyloc_tf.errors import TinylocError

    with pytest.raises(TinylocError, match="ap_dropout"):
        RSSIAugmentation(DBM, ap_dropout=1.5)
    with pytest.raises(TinylocError, match="noise_db"):
        RSSIAugmentation(DBM, noise_db=-1)
    with pytest.raises(TinylocError, match="sensitivity_db"):
        RSSIAugmentation(DBM, sensitivity_db=-3)
    with pytest.raises(TinylocError, match="slope"):
        RSSIAugmentation(DBM, slope=1.0)


def test_tagger_round_trip_and_tflite_has_no_augmentation(tmp_path):
    import keras

    from tinyloc_tf.compression.convert import convert
    from tinyloc_tf.models import build_model
    from tinyloc_tf.training.recipe import Recipe

    def tagger(augmentation):
        keras.utils.set_random_seed(0)
        return build_model("mamba", features=6, classes=3, hidden=4, layers=1, steps=4, int8_friendly=True,
                           augmentation=augmentation)

    x = np.random.default_rng(0).random((16, 4, 6)).astype(np.float32)
    plain = tagger(None)
    augmented = tagger(Recipe(packet_drop=0.2, time_shift=1, slope=0.2, sensitivity_db=10).augmentation(DBM, seed=0))
    np.testing.assert_array_equal(plain.predict(x, verbose=0), augmented.predict(x, verbose=0))
    augmented.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.augmentation is not None and loaded.augmentation.get_config()["packet_drop"] == 0.2
    assert loaded.augmentation.get_config()["slope"] == 0.2
    np.testing.assert_allclose(loaded.predict(x, verbose=0), augmented.predict(x, verbose=0), atol=1e-6)

    with_aug = convert(augmented, "int8", representative=x).tflite
    without = convert(plain, "int8", representative=x).tflite
    assert with_aug == without  # the encoder alone is converted: the augmentation never is
