"""CRF decoding in numpy: the best path of a whole sequence, and one room per sample online.

::

    path = viterbi_decode(emissions, transitions, start, end)   # [B, T, K] -> [B, T]

    decoder = ForwardFilter(transitions, start)          # argmax of the filtered marginal
    decoder = FixedLagViterbi(transitions, start, lag=5) # best path, each decision L samples late
    for emission in stream:                              # emission float [K]
        for t, room in decoder.step(emission): ...       # (sample index, class) decided now
    for t, room in decoder.flush(): ...                  # the last L samples at the end

    path = decode_stream(emissions, transitions, start, method="viterbi", lag=5)   # [n] -> [n]

Plain numpy, without Keras, so that the tools that read a ``.tflite`` (``evaluate``,
``predict``, the firmware checks) decode without loading TensorFlow; the Keras CRF layer
(:class:`tinyloc_tf.models.crf.CRF`) decodes in its graph with the same order of operations.

:func:`viterbi_decode` sees the whole window before it decides; on a stream there is no end,
so neither online decoder uses the CRF's ``end`` scores. Both keep O(K) state (plus ``L x K``
backpointers) however long the stream runs:

- **Forward filtering**: ``p(y_t | x_1..t)`` by the normalised forward recursion in the
  probability domain, ``alpha_t = normalise(w_t * (alpha_{t-1} @ M))`` with
  ``M = exp(transitions - max)`` and ``w_t = exp(e_t - max_k e_t)``; the room is its argmax.
- **Fixed-lag Viterbi**: the max-product recursion of ``viterbi_decode`` (same order, ties to
  the lowest index), its scores shifted by their maximum after every sample so they stay
  bounded over hours; the room of sample ``t - L`` is read by backtracking ``L`` steps from
  the best current state. ``L = 0`` is the argmax of the current Viterbi score.

The firmware's C ports (``tflm_app/src/viterbi.cc``, ``tflm_app/src/streaming_decoder.cc``)
must give the same paths, bit for bit. So every float32 operation of the online decoders is
written out in the C loop order (no numpy reduction, whose pairwise summation the C loop would
not match), and ``exp`` is the hand-written :func:`exp_nonpositive` (a power-of-two split and a
fixed polynomial), since numpy's, glibc's and newlib's ``expf`` may differ in the last bit.
"""

from __future__ import annotations

import math

import numpy as np

from tinyloc_tf.errors import TinylocError

METHODS = ("filter", "viterbi")

_F32 = np.float32
_LOG2E = _F32(1.4426950408889634)
#: Taylor coefficients of 2**f = exp(f ln 2) on [0, 1), highest degree first, as float32
#: (``float32(ln2**n / n!)``; the C port spells the same values in hexadecimal).
#: Degree 7: relative error below 2e-7 at f = 1; rounding x * log2(e) to float32 adds up to
#: about |x| * 6e-8 (below 1e-5 on [-87, 0]).
_EXP2_POLY = tuple(_F32(math.log(2.0) ** n / math.factorial(n)) for n in range(7, -1, -1))
assert [float(c).hex() for c in _EXP2_POLY] == [
    "0x1.ffcbfc0000000p-17", "0x1.4309120000000p-13", "0x1.5d87fe0000000p-10", "0x1.3b2ab60000000p-7",
    "0x1.c6b08e0000000p-5", "0x1.ebfbe00000000p-3", "0x1.62e4300000000p-1", "0x1.0000000000000p+0",
]
#: Below this power of two the result would be subnormal: return 0 (C: the same test).
_EXP2_MIN = -126.0


def exp_nonpositive(x: np.ndarray) -> np.ndarray:
    """``exp(x)`` for float32 ``x <= 0`` (any shape), reproducible bit for bit in C.

    ``y = x * log2(e)``; ``k = floor(y)``, ``f = y - k`` (exact); ``2**f`` by Horner's rule
    on :data:`_EXP2_POLY`; ``ldexp(2**f, k)`` (exact). ``y < -126`` gives 0.
    """
    x = np.asarray(x, dtype=_F32)
    y = (x * _LOG2E).astype(_F32)
    k = np.floor(y)
    f = (y - k).astype(_F32)
    p = np.full_like(f, _EXP2_POLY[0])
    for c in _EXP2_POLY[1:]:
        p = (p * f).astype(_F32)
        p = (p + c).astype(_F32)
    small = y < _EXP2_MIN
    k = np.where(small, 0, k).astype(np.int32)
    return np.where(small, _F32(0.0), np.ldexp(p, k)).astype(_F32)


def _first_argmax(values: np.ndarray) -> int:
    """Index of the largest value, the lowest on ties (what the C loop with ``>`` does)."""
    return int(np.argmax(values))


def _crf_weights(transitions, start) -> tuple[np.ndarray, np.ndarray]:
    transitions = np.asarray(transitions, dtype=_F32)
    start = np.asarray(start, dtype=_F32)
    if transitions.ndim != 2 or transitions.shape[0] != transitions.shape[1]:
        raise TinylocError(f"CRF transitions must be [K, K], got shape {transitions.shape}")
    if start.shape != (transitions.shape[0],):
        raise TinylocError(f"CRF start scores must be [{transitions.shape[0]}], got shape {start.shape}")
    if not (np.isfinite(transitions).all() and np.isfinite(start).all()):
        raise TinylocError("CRF weights hold NaN or infinite values")
    return transitions, start


def _emission(emission, classes: int) -> np.ndarray:
    emission = np.asarray(emission, dtype=_F32)
    if emission.shape != (classes,):
        raise TinylocError(f"an emission must be [{classes}] scores, got shape {emission.shape}")
    if not np.isfinite(emission).all():
        raise TinylocError("an emission holds NaN or infinite values")
    return emission


def viterbi_decode(emissions, transitions, start, end) -> np.ndarray:
    """Best CRF path in numpy (host side, also for TFLM's dequantized emissions).

    ``emissions`` float ``[B, T, K]`` (or ``[T, K]``), ``transitions [K, K]``, ``start [K]``,
    ``end [K]`` -> int32 ``[B, T]`` (or ``[T]``). Computed in float32 in the order
    ``score[prev] + transitions[prev, next]``, max over ``prev`` (ties: lowest index), then
    ``+ emissions[t, next]``; a C port that keeps this order decodes identically.
    """
    emissions = np.asarray(emissions, dtype=np.float32)
    single = emissions.ndim == 2
    if single:
        emissions = emissions[None]
    if emissions.ndim != 3:
        raise TinylocError(f"emissions must be [batch, steps, tags], got shape {emissions.shape}")
    batch, steps, k = emissions.shape
    transitions = np.asarray(transitions, dtype=np.float32)
    start = np.asarray(start, dtype=np.float32)
    end = np.asarray(end, dtype=np.float32)
    if transitions.shape != (k, k) or start.shape != (k,) or end.shape != (k,):
        raise TinylocError(
            f"CRF weights do not match {k} tags: transitions {transitions.shape}, "
            f"start {start.shape}, end {end.shape}"
        )
    if steps == 0:
        path = np.zeros((batch, 0), dtype=np.int32)
        return path[0] if single else path
    score = start[None, :] + emissions[:, 0]
    backpointers = np.empty((max(steps - 1, 0), batch, k), dtype=np.int32)
    for t in range(1, steps):
        candidates = score[:, :, None] + transitions[None]
        backpointers[t - 1] = np.argmax(candidates, axis=1)
        score = np.max(candidates, axis=1) + emissions[:, t]
    path = np.empty((batch, steps), dtype=np.int32)
    path[:, -1] = np.argmax(score + end[None, :], axis=1)
    rows = np.arange(batch)
    for t in range(steps - 1, 0, -1):
        path[:, t - 1] = backpointers[t - 1][rows, path[:, t]]
    return path[0] if single else path


class ForwardFilter:
    """Argmax of the filtered marginal ``p(y_t | x_1..t)``; one decision per sample, no delay.

    ``transitions [K, K]`` (``[prev, next]``), ``start [K]``. State: ``alpha [K]``.
    """

    lag = 0

    def __init__(self, transitions, start):
        self.transitions, self.start = _crf_weights(transitions, start)
        self.classes = len(self.start)
        shifted = (self.transitions - _F32(self.transitions.max())).astype(_F32)
        self.transition_weights = exp_nonpositive(shifted)  # M [K, K], max entry 1
        self.alpha: np.ndarray | None = None
        self.t = 0

    def _normalised(self, weights: np.ndarray) -> np.ndarray | None:
        total = _F32(0.0)
        for value in weights:  # sequential, as in C
            total = _F32(total + value)
        if not total > 0:
            return None
        return (weights / total).astype(_F32)

    def step(self, emission) -> list[tuple[int, int]]:
        """Feed the emission ``[K]`` of the next sample; returns ``[(t, class)]``."""
        emission = _emission(emission, self.classes)
        if self.alpha is None:
            emission = (emission + self.start).astype(_F32)
        w = exp_nonpositive((emission - _F32(emission.max())).astype(_F32))
        if self.alpha is None:
            alpha = self._normalised(w)
        else:
            predicted = np.zeros(self.classes, dtype=_F32)
            for i in range(self.classes):  # predicted[j] = sum_i alpha[i] M[i, j], i in order
                predicted = (predicted + (self.alpha[i] * self.transition_weights[i]).astype(_F32)).astype(_F32)
            alpha = self._normalised((predicted * w).astype(_F32))
            if alpha is None:  # every path underflowed: restart from this sample's evidence
                alpha = self._normalised(w)
        self.alpha = alpha
        decided = [(self.t, _first_argmax(alpha))]
        self.t += 1
        return decided

    def flush(self) -> list[tuple[int, int]]:
        return []


class FixedLagViterbi:
    """Viterbi decisions ``lag`` samples late: sample ``t``'s room is decided at ``t + lag``.

    ``transitions [K, K]``, ``start [K]``, ``lag`` L >= 0. State: scores ``[K]`` and a ring of
    the last L backpointer rows ``[L, K]``.
    """

    def __init__(self, transitions, start, lag: int = 0):
        self.transitions, self.start = _crf_weights(transitions, start)
        if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) or lag < 0:
            raise TinylocError(f"the fixed lag must be a non-negative number of samples, got {lag!r}")
        self.lag = int(lag)
        self.classes = len(self.start)
        self.score: np.ndarray | None = None
        self.backpointers = np.zeros((max(self.lag, 1), self.classes), dtype=np.int32)
        self.t = 0

    def _backtrack(self, tag: int, steps: int) -> list[int]:
        """Tags of samples ``t-1, t-2, ...`` (``steps`` of them) from ``tag`` at the newest ``t``."""
        tags = []
        for s in range(steps):
            row = (self.t - 1 - s) % self.lag
            tag = int(self.backpointers[row, tag])
            tags.append(tag)
        return tags

    def step(self, emission) -> list[tuple[int, int]]:
        """Feed the emission ``[K]`` of sample ``t``; returns the decision for ``t - L`` (if any)."""
        emission = _emission(emission, self.classes)
        if self.score is None:
            score = (self.start + emission).astype(_F32)
        else:
            candidates = (self.score[:, None] + self.transitions).astype(_F32)  # [prev, next]
            pointers = np.argmax(candidates, axis=0).astype(np.int32)
            score = (candidates.max(axis=0) + emission).astype(_F32)
            if self.lag:
                self.backpointers[self.t % self.lag] = pointers  # row of sample t
        self.score = (score - _F32(score.max())).astype(_F32)
        newest = self.t
        self.t += 1
        if newest < self.lag:
            return []
        tag = _first_argmax(self.score)
        if self.lag:
            tag = self._backtrack(tag, self.lag)[-1]
        return [(newest - self.lag, tag)]

    def flush(self) -> list[tuple[int, int]]:
        """The decisions still pending at the end of the stream (the last ``min(L, t)`` samples)."""
        pending = min(self.lag, self.t)
        if self.score is None or pending == 0:
            return []
        tag = _first_argmax(self.score)
        tags = [tag] + self._backtrack(tag, pending - 1)  # newest first
        newest = self.t - 1
        return [(newest - i, tags[i]) for i in range(pending - 1, -1, -1)]


def make_decoder(method: str, transitions, start, lag: int = 0):
    """:class:`ForwardFilter` (``"filter"``) or :class:`FixedLagViterbi` (``"viterbi"``)."""
    if method == "filter":
        return ForwardFilter(transitions, start)
    if method == "viterbi":
        return FixedLagViterbi(transitions, start, lag)
    raise TinylocError(f"unknown online decoder {method!r}; choose one of {', '.join(METHODS)}")


def decode_stream(emissions, transitions, start, method: str = "viterbi", lag: int = 0) -> np.ndarray:
    """Online decoding of a whole stream: emissions float ``[n, K]`` -> int32 ``[n]``.

    ``path[t]`` is the decision the online decoder made for sample ``t`` (at ``t + lag``,
    or at the end of the stream for the last ``lag`` samples).
    """
    emissions = np.asarray(emissions, dtype=_F32)
    if emissions.ndim != 2:
        raise TinylocError(f"a stream's emissions must be [n, K], got shape {emissions.shape}")
    decoder = make_decoder(method, transitions, start, lag)
    path = np.full(len(emissions), -1, dtype=np.int32)
    for emission in emissions:
        for t, tag in decoder.step(emission):
            path[t] = tag
    for t, tag in decoder.flush():
        path[t] = tag
    if (path < 0).any():  # every sample gets exactly one decision; a gap is a bug
        raise TinylocError(f"online decoding left {int((path < 0).sum())} samples undecided")
    return path
