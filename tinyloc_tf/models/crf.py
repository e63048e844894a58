"""Linear-chain conditional random field (CRF) for Keras 3 (its numpy Viterbi: ``tinyloc_tf.decoding``).

No maintained Keras 3 CRF exists (tensorflow-addons is end-of-life), so this is written
here, after the forward algorithm and Viterbi of ``pytorch-crf`` that the reference MDCSA
uses. Notation: ``B`` batch, ``T`` time steps, ``K`` tags (rooms). Scores of a path
``y_0..y_{T-1}``::

    score(y) = start[y_0] + sum_t emissions[t, y_t] + sum_{t>=1} transitions[y_{t-1}, y_t]
               + end[y_{T-1}]

``transitions[i, j]`` scores moving from tag ``i`` to tag ``j``. Every window has all ``T``
steps, so there is no mask. Loops run over the static ``T`` in Python: windows are short
(T <= a few dozen) and an unrolled graph is what converts and runs everywhere.
"""

from __future__ import annotations

import keras
from keras import ops

from tinyloc_tf.errors import TinylocError


def _static_steps(tensor, what: str) -> int:
    steps = tensor.shape[1]
    if steps is None:
        raise TinylocError(
            f"the CRF needs a static number of time steps; {what} has shape {tuple(tensor.shape)}"
        )
    return int(steps)


@keras.saving.register_keras_serializable(package="tinyloc")
class CRF(keras.layers.Layer):
    """CRF head over ``K`` tags with weights ``transitions [K, K]``, ``start [K]``, ``end [K]``.

    ``call(emissions)`` returns the emissions unchanged, so a model's graph (and its
    ``.tflite``) ends at the emissions and decoding stays outside. Use :meth:`nll` as the
    training loss and :meth:`viterbi` (graph) or :func:`tinyloc_tf.decoding.viterbi_decode` (numpy) to decode.
    """

    def __init__(self, num_tags: int, **kwargs):
        super().__init__(**kwargs)
        if int(num_tags) < 1:
            raise TinylocError(f"the CRF needs at least one tag, got num_tags={num_tags}")
        self.num_tags = int(num_tags)

    def build(self, input_shape=None):
        k = self.num_tags
        # pytorch-crf's initialisation: small uniform scores, no preference at the start.
        init = keras.initializers.RandomUniform(-0.1, 0.1)
        self.transitions = self.add_weight(name="transitions", shape=(k, k), initializer=init)
        self.start = self.add_weight(name="start", shape=(k,), initializer=init)
        self.end = self.add_weight(name="end", shape=(k,), initializer=init)

    def call(self, emissions):
        return emissions

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_tags": self.num_tags}

    # -- scores -------------------------------------------------------------------------

    def _check(self, emissions):
        emissions = ops.convert_to_tensor(emissions, dtype="float32")
        if len(emissions.shape) != 3 or emissions.shape[-1] != self.num_tags:
            raise TinylocError(
                f"CRF emissions must be [batch, steps, {self.num_tags}], got {tuple(emissions.shape)}"
            )
        return emissions

    def sequence_score(self, emissions, tags):
        """Score of the given paths: emissions ``[B, T, K]``, tags int ``[B, T]`` -> ``[B]``."""
        emissions = self._check(emissions)
        tags = ops.cast(tags, "int32")
        if tuple(tags.shape[1:]) != tuple(emissions.shape[1:2]):
            raise TinylocError(
                f"CRF labels must be [batch, {emissions.shape[1]}], got {tuple(tags.shape)}"
            )
        k = self.num_tags
        emitted = ops.take_along_axis(emissions, tags[..., None], axis=2)[..., 0]
        score = ops.sum(emitted, axis=1)
        score = score + ops.take(self.start, tags[:, 0]) + ops.take(self.end, tags[:, -1])
        if _static_steps(emissions, "emissions") > 1:
            # transitions[y_{t-1}, y_t] read from the flattened matrix
            pair_index = tags[:, :-1] * k + tags[:, 1:]
            moved = ops.take(ops.reshape(self.transitions, (-1,)), pair_index)
            score = score + ops.sum(moved, axis=1)
        return score

    def _forward_scores(self, emissions):
        """Forward variables ``alpha_t [B, K]`` for every ``t`` (log-space)."""
        steps = _static_steps(emissions, "emissions")
        alpha = self.start[None, :] + emissions[:, 0]
        alphas = [alpha]
        for t in range(1, steps):
            # [B, K_prev, 1] + [1, K_prev, K_next], reduced over the previous tag
            alpha = ops.logsumexp(alpha[:, :, None] + self.transitions[None], axis=1)
            alpha = alpha + emissions[:, t]
            alphas.append(alpha)
        return alphas

    def log_partition(self, emissions):
        """``log sum_y exp(score(y))`` over all ``K**T`` paths: ``[B, T, K] -> [B]``."""
        emissions = self._check(emissions)
        alpha = self._forward_scores(emissions)[-1]
        return ops.logsumexp(alpha + self.end[None, :], axis=1)

    def nll(self, emissions, tags, sample_weight=None):
        """Mean over the batch of ``log Z - score(gold path)`` (scalar)."""
        emissions = self._check(emissions)
        per_sequence = self.log_partition(emissions) - self.sequence_score(emissions, tags)
        if sample_weight is None:
            return ops.mean(per_sequence)
        weight = ops.reshape(ops.cast(sample_weight, per_sequence.dtype), (-1,))
        return ops.sum(per_sequence * weight) / ops.maximum(ops.sum(weight), 1e-12)

    def marginals(self, emissions):
        """Posterior ``p(y_t = k | x)`` by forward-backward: ``[B, T, K] -> [B, T, K]``.

        A soft per-step target (e.g. for distillation); each row sums to 1.
        """
        emissions = self._check(emissions)
        steps = _static_steps(emissions, "emissions")
        alphas = self._forward_scores(emissions)
        beta = ops.broadcast_to(self.end[None, :], ops.shape(alphas[-1]))
        betas = [beta]
        for t in range(steps - 1, 0, -1):
            # beta_{t-1}[i] = logsumexp_j(transitions[i, j] + emissions[t, j] + beta_t[j])
            nxt = emissions[:, t] + beta
            beta = ops.logsumexp(self.transitions[None] + nxt[:, None, :], axis=2)
            betas.append(beta)
        betas.reverse()
        log_z = ops.logsumexp(alphas[-1] + self.end[None, :], axis=1)
        joint = ops.stack([a + b for a, b in zip(alphas, betas)], axis=1)
        return ops.exp(joint - log_z[:, None, None])

    # -- decoding -----------------------------------------------------------------------

    def viterbi(self, emissions):
        """Best path in the graph: ``[B, T, K] -> int32 [B, T]``.

        Same recursion, summation order and tie-breaking (lowest tag index) as
        :func:`tinyloc_tf.decoding.viterbi_decode`, so both give identical paths on float32
        emissions.
        """
        emissions = self._check(emissions)
        steps = _static_steps(emissions, "emissions")
        score = self.start[None, :] + emissions[:, 0]
        backpointers = []
        for t in range(1, steps):
            candidates = score[:, :, None] + self.transitions[None]  # [B, prev, next]
            backpointers.append(ops.cast(ops.argmax(candidates, axis=1), "int32"))
            score = ops.max(candidates, axis=1) + emissions[:, t]
        tag = ops.cast(ops.argmax(score + self.end[None, :], axis=1), "int32")
        path = [tag]
        for pointers in reversed(backpointers):
            tag = ops.take_along_axis(pointers, tag[:, None], axis=1)[:, 0]
            path.append(tag)
        path.reverse()
        return ops.stack(path, axis=1)
