"""Raw dBm -> int8 input tables: the firmware's lookup equals the host's quantisation."""

import numpy as np
import pytest

from tinyloc_tf.data.representation import RELATIVE_REFERENCE_DBM, Representation, fit_representation
from tinyloc_tf.deployment.host import TensorIO, quantize
from tinyloc_tf.deployment.input_table import MAX_TABLE_BYTES, build_input_table, dbm_of_inputs, table_inputs

FLOOR = -105.0


def _io(features, scale=1 / 255, zero_point=-128):
    return TensorIO(shape=(1, 1, features), dtype=np.dtype(np.int8), scale=scale, zero_point=zero_point)


def _dbm(rng, n, features, floor=FLOOR):
    """Integer dBm with most cells not heard, as real scans are."""
    heard = rng.random((n, features)) < 0.3
    return np.where(heard, rng.integers(int(floor) + 1, 1, (n, features)), floor).astype(np.float64)


@pytest.mark.parametrize("kind", ["minmax", "dbm", "powed", "relative"])
@pytest.mark.parametrize("scale,zero_point", [(1 / 255, -128), (0.0041, -120), (0.0072, -101)])
def test_table_reproduces_host_quantisation(kind, scale, zero_point):
    rng = np.random.default_rng(0)
    features = 12
    train = _dbm(rng, 400, features)
    representation, _ = fit_representation(kind, train, FLOOR)
    scaling = representation.to_meta()
    test = _dbm(rng, 300, features)
    test[0, :3] = [-20, 0, -104]  # beyond the train range: minmax clips, the physical ones do not
    X, _ = representation.apply(test)
    io = _io(features, scale, zero_point)
    found = table_inputs(X, scaling, io)
    assert found is not None
    table, dbm = found
    np.testing.assert_array_equal(table.lookup(dbm), quantize(X, io))
    # The radio's own readings give the same inputs (minmax clips outside the train range, so
    # the exported dBm may differ from the raw ones there, never the inputs).
    np.testing.assert_array_equal(table.lookup(test.astype(np.int8)), quantize(X, io))
    if kind in ("dbm", "powed"):
        np.testing.assert_array_equal(dbm, test.astype(np.int8))
    if kind == "relative":  # exported relative to each scan's strongest reading, at 0 dBm
        assert (dbm.max(axis=-1)[(test > FLOOR).any(axis=-1)] == 0).all()
        assert table.reference == RELATIVE_REFERENCE_DBM
    assert table.table.shape == ((features if kind == "minmax" else 1), 106)
    assert Representation.from_meta(scaling) == representation


def test_shared_table_is_one_row_for_any_width():
    scaling = Representation("powed", FLOOR, exponent=np.e).to_meta()
    table = build_input_table(scaling, 520, _io(520))
    assert table.table.shape == (1, 106) and table.row.max() == 0 and table.floor == -105
    assert table.table[0, 0] == -128  # not heard -> 0.0 -> the zero point


def test_large_minmax_table_is_refused():
    representation, _ = fit_representation("minmax", np.full((2, 520), FLOOR) + np.arange(2)[:, None], FLOOR)
    assert 520 * 106 > MAX_TABLE_BYTES
    assert build_input_table(representation.to_meta(), 520, _io(520)) is None


def test_averaged_readings_fall_back_to_quantised_inputs():
    """In-home steps average packets: not integer dBm, so no table can reproduce them."""
    rng = np.random.default_rng(1)
    representation = Representation("dbm", -120.0)
    dbm = _dbm(rng, 50, 8, floor=-120.0) + 0.37
    X, _ = representation.apply(dbm)
    assert table_inputs(X, representation.to_meta(), _io(8, scale=0.0013, zero_point=-128)) is None
    assert table_inputs(X, None, _io(8)) is None


def test_dbm_of_inputs_inverts_each_representation():
    rng = np.random.default_rng(2)
    dbm = _dbm(rng, 100, 6)
    for kind in ("minmax", "dbm", "powed"):  # inside the train range, minmax inverts too
        representation, _ = fit_representation(kind, dbm, FLOOR)
        X, _ = representation.apply(dbm)
        np.testing.assert_array_equal(dbm_of_inputs(X, representation.to_meta()), dbm.astype(np.int16))
    representation, _ = fit_representation("relative", dbm, FLOOR, reference_dbm=-30.0)
    X, _ = representation.apply(dbm)
    strongest = np.where(dbm > FLOOR, dbm, -np.inf).max(axis=-1, keepdims=True)
    expected = np.where((dbm > FLOOR) & (dbm - strongest > FLOOR + 30), dbm - strongest, FLOOR)
    np.testing.assert_array_equal(dbm_of_inputs(X, representation.to_meta()), expected.astype(np.int16))


def test_relative_representation_ignores_a_gain_offset():
    """Another phone reading every access point k dB higher or lower gives the same inputs, on
    the host and through the firmware's table."""
    rng = np.random.default_rng(3)
    dbm = _dbm(rng, 200, 10)
    dbm = np.where(dbm > FLOOR, np.clip(dbm, -95, -10), FLOOR)  # offsets below keep readings in range
    representation, _ = fit_representation("relative", dbm, FLOOR)
    io = _io(10)
    table = build_input_table(representation.to_meta(), 10, io)
    X, _ = representation.apply(dbm)
    for offset in (-8, 5):
        moved = np.where(dbm > FLOOR, dbm + offset, FLOOR)
        np.testing.assert_array_equal(representation.apply(moved)[0], X)
        np.testing.assert_array_equal(table.lookup(moved.astype(np.int8)), quantize(X, io))
    # The strongest reading sits at the reference; one reference - floor dB or more below it is not heard.
    span = RELATIVE_REFERENCE_DBM - FLOOR
    row = np.full(10, FLOOR)
    row[:3] = [-30, -30 - span + 1, -30 - span]
    x = representation.apply(row)[0]
    assert x[0] == pytest.approx((span / -FLOOR) ** np.e) and x[1] > 0 and x[2] == 0 and (x[3:] == 0).all()


def test_relative_representation_needs_its_reference():
    from tinyloc_tf.errors import DataError

    scaling = Representation("relative", FLOOR, exponent=np.e, reference_dbm=-60.0).to_meta()
    del scaling["reference_dbm"]
    with pytest.raises(DataError, match="reference_dbm"):
        Representation.from_meta(scaling)
    with pytest.raises(DataError, match="reference_dbm"):
        Representation("relative", FLOOR, exponent=np.e, reference_dbm=-110.0)
