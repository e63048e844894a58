"""Continuous streams rebuilt from the overlapping windows of a prepared split.

A streaming model reads a session one sample after another, not in 4 s windows. The
prepared contract stores windows only, but the in-home windows are cut with hop ``T/2``
inside contiguous runs of a session (never across sessions, split blocks or unlabelled
steps), and written in session and time order. So consecutive windows ``a, b`` of one run
overlap exactly: ``X[b, :T-hop] == X[a, hop:]`` (and the labels too). Chaining every such
pair gives back each contiguous labelled run, sample for sample, with the windows' scaling:

    streams = split_streams(dataset.test)        # list of Stream(name, X [n, F], y [n])

A run ends where the loader dropped a window (an unlabelled step) or a session ends; the
next window starts a new stream, so a stream is the longest stretch the windows cover
without a gap. Data with non-overlapping windows (UJIIndoorLoc, T = 1) gives one stream
per window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyloc_tf.errors import DataError


@dataclass
class Stream:
    """One continuous run: ``X`` float32 ``[n, F]``, ``y`` int32 ``[n]``."""

    name: str
    X: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(len(self.X))


def window_hop(X: np.ndarray, y: np.ndarray) -> int | None:
    """The hop between consecutive overlapping windows (``T`` when none overlap)."""
    steps = X.shape[1]
    for hop in range(1, steps):
        if len(X) > 1 and any(
            np.array_equal(X[i + 1, : steps - hop], X[i, hop:]) and np.array_equal(y[i + 1, : steps - hop], y[i, hop:])
            for i in range(min(len(X) - 1, 64))
        ):
            return hop
    return steps


def split_streams(split, hop: int | None = None, name: str = "stream") -> list[Stream]:
    """Chain the windows of ``split`` (``X [N, T, F]``, ``y [N, T]``) into continuous streams.

    ``hop`` defaults to the one the windows show (:func:`window_hop`). Each stream is named
    ``"<name> <s>: windows a..b"``.
    """
    X, y = np.asarray(split.X, dtype=np.float32), np.asarray(split.y, dtype=np.int32)
    if X.ndim != 3 or y.shape != X.shape[:2]:
        raise DataError(f"windows must be X [N, T, F] and y [N, T], got {X.shape} and {y.shape}")
    if len(X) == 0:
        return []
    steps = X.shape[1]
    hop = window_hop(X, y) if hop is None else int(hop)
    if not 1 <= hop <= steps:
        raise DataError(f"window hop must be in 1..{steps}, got {hop}")
    overlap = steps - hop
    streams: list[Stream] = []
    start = 0
    for i in range(1, len(X) + 1):
        joined = i < len(X) and overlap > 0 and np.array_equal(X[i, :overlap], X[i - 1, hop:]) and np.array_equal(
            y[i, :overlap], y[i - 1, hop:])
        if joined:
            continue
        pieces_X = [X[start]] + [X[j, overlap:] for j in range(start + 1, i)]
        pieces_y = [y[start]] + [y[j, overlap:] for j in range(start + 1, i)]
        streams.append(Stream(f"{name} {len(streams)}: windows {start}..{i - 1}",
                              np.concatenate(pieces_X), np.concatenate(pieces_y)))
        start = i
    return streams


def stream_windows(split, steps: int) -> tuple:
    """``(X [N, steps, F], y [N, steps], summary)``: ``split``'s windows chained back into
    streams (:func:`split_streams`) and cut into windows of ``steps`` samples, at the prepared
    windows' hop; the last window of each stream ends at the stream's end, so no sample of a
    long enough stream is left out. A stream shorter than ``steps`` has no such window:
    ``summary`` counts what was used (``streams``, ``samples``) and what was left out
    (``short_streams``, ``short_samples``). ``steps`` 0 or the prepared T: the windows as they
    are, and no summary."""
    X, y = np.asarray(split.X), np.asarray(split.y)
    if steps in (0, X.shape[1]) or len(X) == 0:
        return X, y, None
    if steps < X.shape[1]:
        raise DataError(f"--train-steps {steps} is shorter than the prepared windows (T = {X.shape[1]}); "
                        "train on longer windows or on the prepared ones (0)")
    hop = window_hop(X, y)
    windows_X, windows_y, short = [], [], []
    streams = split_streams(split, hop)
    for stream in streams:
        if len(stream) < steps:
            short.append(len(stream))
            continue
        starts = list(range(0, len(stream) - steps + 1, hop))
        if starts[-1] != len(stream) - steps:
            starts.append(len(stream) - steps)
        windows_X += [stream.X[a : a + steps] for a in starts]
        windows_y += [stream.y[a : a + steps] for a in starts]
    summary = {"steps": int(steps), "hop": int(hop), "windows": len(windows_X),
               "streams": len(streams) - len(short), "samples": int(sum(len(s) for s in streams) - sum(short)),
               "short_streams": len(short), "short_samples": int(sum(short))}
    if not windows_X:
        raise DataError(f"--train-steps {steps}: no training stream is that long (longest "
                        f"{max(len(s) for s in streams)} samples)")
    return np.stack(windows_X), np.stack(windows_y), summary
