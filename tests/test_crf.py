"""CRF layer against brute-force enumeration of every path on small cases."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from tinyloc_tf.errors import TinylocError
from tinyloc_tf.decoding import viterbi_decode
from tinyloc_tf.models import CRF


def path_score(emissions, tags, transitions, start, end):
    """score(y) for one sequence, straight from the definition (float64)."""
    score = start[tags[0]] + end[tags[-1]]
    score += sum(emissions[t, tag] for t, tag in enumerate(tags))
    score += sum(transitions[a, b] for a, b in zip(tags[:-1], tags[1:]))
    return score


def brute_force(emissions, transitions, start, end):
    """log Z, the best path and per-step marginals of one sequence [T, K] by enumeration."""
    steps, k = emissions.shape
    paths = np.array(list(itertools.product(range(k), repeat=steps)))
    scores = np.array([path_score(emissions, p, transitions, start, end) for p in paths])
    log_z = np.logaddexp.reduce(scores)
    probs = np.exp(scores - log_z)
    marginals = np.zeros((steps, k))
    for p, prob in zip(paths, probs):
        marginals[np.arange(steps), p] += prob
    return log_z, paths[np.argmax(scores)], marginals


def make_crf(k, seed):
    crf = CRF(k)
    crf.build((None, None, k))
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=(k, k)), rng.normal(size=k), rng.normal(size=k)]
    crf.set_weights([w.astype("float32") for w in weights])
    return crf, [w.astype("float32").astype(np.float64) for w in weights]


@pytest.mark.parametrize("steps,k", [(1, 3), (2, 3), (4, 3), (5, 2), (3, 4)])
def test_crf_matches_brute_force(steps, k):
    crf, (transitions, start, end) = make_crf(k, seed=steps * 10 + k)
    rng = np.random.default_rng(steps + k)
    emissions = (2.0 * rng.normal(size=(3, steps, k))).astype("float32")
    tags = rng.integers(0, k, size=(3, steps)).astype("int32")

    log_z = np.asarray(crf.log_partition(emissions))
    gold = np.asarray(crf.sequence_score(emissions, tags))
    nll = float(crf.nll(emissions, tags))
    marginals = np.asarray(crf.marginals(emissions))
    graph_paths = np.asarray(crf.viterbi(emissions))
    numpy_paths = viterbi_decode(emissions, *crf.get_weights())

    expected_nll = []
    for b in range(3):
        e = emissions[b].astype(np.float64)
        bf_log_z, bf_best, bf_marginals = brute_force(e, transitions, start, end)
        bf_gold = path_score(e, tags[b], transitions, start, end)
        np.testing.assert_allclose(log_z[b], bf_log_z, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(gold[b], bf_gold, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(marginals[b], bf_marginals, atol=1e-5)
        np.testing.assert_array_equal(graph_paths[b], bf_best)
        np.testing.assert_array_equal(numpy_paths[b], bf_best)
        expected_nll.append(bf_log_z - bf_gold)
    np.testing.assert_allclose(nll, np.mean(expected_nll), rtol=1e-5, atol=1e-4)
    assert graph_paths.dtype == np.int32 and numpy_paths.dtype == np.int32


def test_graph_and_numpy_viterbi_agree_on_larger_inputs():
    k, steps = 11, 20
    crf, _ = make_crf(k, seed=1)
    emissions = np.random.default_rng(2).normal(size=(64, steps, k)).astype("float32")
    np.testing.assert_array_equal(
        np.asarray(crf.viterbi(emissions)), viterbi_decode(emissions, *crf.get_weights())
    )


def test_viterbi_ties_pick_the_lowest_tag():
    k = 3
    zeros = np.zeros((k, k), np.float32), np.zeros(k, np.float32), np.zeros(k, np.float32)
    emissions = np.zeros((1, 4, k), np.float32)
    np.testing.assert_array_equal(viterbi_decode(emissions, *zeros), [[0, 0, 0, 0]])
    crf = CRF(k)
    crf.build()
    crf.set_weights(list(zeros))
    np.testing.assert_array_equal(np.asarray(crf.viterbi(emissions)), [[0, 0, 0, 0]])


def test_viterbi_follows_strong_transitions():
    # Emissions alone prefer tag 1 at t=1, but 0 -> 1 is forbidden by a large penalty.
    transitions = np.zeros((2, 2), np.float32)
    transitions[0, 1] = -100.0
    emissions = np.array([[5.0, 0.0], [0.0, 1.0], [0.0, 1.0]], np.float32)
    path = viterbi_decode(emissions, transitions, np.zeros(2), np.zeros(2))
    assert path.shape == (3,)
    np.testing.assert_array_equal(path, [0, 0, 0])


def test_numpy_viterbi_rejects_mismatched_weights():
    with pytest.raises(TinylocError, match="do not match 3 tags"):
        viterbi_decode(np.zeros((2, 4, 3)), np.zeros((4, 4)), np.zeros(4), np.zeros(4))
    with pytest.raises(TinylocError, match="emissions must be"):
        viterbi_decode(np.zeros(3), np.zeros((3, 3)), np.zeros(3), np.zeros(3))


def test_nll_checks_label_shape_and_supports_sample_weight():
    crf, _ = make_crf(3, seed=0)
    emissions = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    tags = np.array([[0, 1, 2, 0], [2, 2, 1, 0]], np.int32)
    with pytest.raises(TinylocError, match=r"labels must be \[batch, 4\]"):
        crf.nll(emissions, tags[:, :3])
    with pytest.raises(TinylocError, match=r"emissions must be \[batch, steps, 3\]"):
        crf.nll(emissions[..., :2], tags)
    per_sequence = np.asarray(crf.log_partition(emissions) - crf.sequence_score(emissions, tags))
    weighted = float(crf.nll(emissions, tags, sample_weight=np.array([1.0, 0.0])))
    np.testing.assert_allclose(weighted, per_sequence[0], rtol=1e-6)


def test_nll_trains_the_crf_weights():
    """Gradient descent on the NLL alone learns a transition structure."""
    import tensorflow as tf

    k, steps = 3, 6
    crf, _ = make_crf(k, seed=3)
    rng = np.random.default_rng(4)
    emissions = tf.constant(rng.normal(scale=0.1, size=(32, steps, k)).astype("float32"))
    tags = np.tile(np.arange(steps) % k, (32, 1)).astype("int32")  # 0,1,2,0,1,2
    optimizer = keras.optimizers.Adam(0.1)
    losses = []
    for _ in range(30):
        with tf.GradientTape() as tape:
            loss = crf.nll(emissions, tags)
        grads = tape.gradient(loss, crf.trainable_weights)
        optimizer.apply_gradients(zip(grads, crf.trainable_weights))
        losses.append(float(loss))
    assert losses[-1] < 0.2 * losses[0]
    np.testing.assert_array_equal(np.asarray(crf.viterbi(emissions))[0], tags[0])


def test_call_returns_emissions_and_config_round_trips():
    crf, _ = make_crf(4, seed=5)
    emissions = np.random.default_rng(5).normal(size=(2, 3, 4)).astype("float32")
    np.testing.assert_array_equal(np.asarray(crf(emissions)), emissions)
    clone = CRF.from_config(crf.get_config())
    assert clone.num_tags == 4
    assert [w.shape for w in crf.weights] == [(4, 4), (4,), (4,)]
    with pytest.raises(TinylocError, match="at least one tag"):
        CRF(0)
