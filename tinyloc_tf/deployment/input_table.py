"""Raw dBm -> int8 model input on the MCU: one lookup table per input representation.

A wearable's radio reports integer dBm. The model wants ``quantize(represent(dbm))``, which
involves a division, a power (powed) and rounding: float maths an MCU should not do per
reading, and which would not match the host bit for bit. Instead the firmware indexes a table
made here, with the host's own functions, for every integer dBm from the representation's
floor (not heard) to 0:

    input_q[f] = table[row[f]][dbm[f] - floor]

``dbm``, ``powed`` and ``relative`` share one row for all access points (``floor..0``: 106
entries for UJIIndoorLoc); ``minmax`` needs one row per access point, so it is used only while
the table stays small (:data:`MAX_TABLE_BYTES`). For ``relative`` the firmware first moves each
scan's heard readings by ``reference - strongest`` (integers, as :meth:`InputTable.lookup` does). The export checks, cell by cell, that the table
reproduces the host's quantised input for every exported window; where the prepared inputs
are not integer dBm (the in-home loader averages packets within a 200 ms step) it does not,
and the firmware takes the host's quantised inputs instead (``input: "quantized"`` in the
export manifest).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinyloc_tf.data.representation import Representation
from tinyloc_tf.deployment.host import TensorIO, quantize

MAX_TABLE_BYTES = 4096  # a per-AP minmax table larger than this costs more flash than it saves


@dataclass
class InputTable:
    """``table`` int8 ``[rows, levels]``, ``row`` uint16 ``[F]``, ``floor`` the dBm of column 0;
    ``reference`` the dBm each scan's strongest reading is moved to first (``relative``), else None."""

    table: np.ndarray
    row: np.ndarray
    floor: int
    reference: int | None = None

    def lookup(self, dbm: np.ndarray) -> np.ndarray:
        """int8 inputs for integer ``dbm [..., F]`` exactly as the firmware computes them."""
        dbm = np.clip(np.asarray(dbm, dtype=np.int64), self.floor, 0)
        if self.reference is not None:
            heard = dbm > self.floor
            strongest = np.where(heard, dbm, self.floor).max(axis=-1, keepdims=True)
            dbm = np.where(heard, np.clip(dbm + (self.reference - strongest), self.floor, 0), self.floor)
        return self.table[self.row[np.arange(dbm.shape[-1])], dbm - self.floor]


def build_input_table(scaling: dict, features: int, io: TensorIO) -> InputTable | None:
    """The table for ``scaling`` (a prepared dataset's or a model's ``meta["scaling"]``) and
    the model's input quantisation ``io``; None when it would exceed :data:`MAX_TABLE_BYTES`."""
    representation = Representation.from_meta(scaling)
    floor = int(np.floor(representation.floor_dbm))
    levels = np.arange(floor, 1, dtype=np.float64)
    if representation.shared_table:
        reference = representation.reference_dbm
        if reference is not None and not (float(reference).is_integer() and floor == representation.floor_dbm):
            return None  # the firmware moves readings by whole dBm
        x, _ = representation.scale(levels)
        return InputTable(quantize(x, io)[None, :], np.zeros(features, dtype=np.uint16), floor,
                          None if reference is None else int(reference))
    if features * len(levels) > MAX_TABLE_BYTES:
        return None
    x, _ = representation.scale(np.repeat(levels[:, None], features, axis=1))  # [levels, F]
    return InputTable(quantize(x, io).T.copy(), np.arange(features, dtype=np.uint16), floor)


def dbm_of_inputs(X: np.ndarray, scaling: dict) -> np.ndarray:
    """Integer dBm ``int16 [..., F]`` that ``X`` (in the representation) came from, rounded."""
    representation = Representation.from_meta(scaling)
    x = np.clip(np.asarray(X, dtype=np.float64), 0.0, 1.0)
    if representation.kind == "minmax":
        dbm = representation.minimum + x * (representation.maximum - representation.minimum)
    else:
        if representation.kind in ("powed", "relative"):
            x = x ** (1.0 / representation.exponent)
        dbm = representation.floor_dbm + x * -representation.floor_dbm
    floor = np.floor(representation.floor_dbm)
    dbm = np.clip(np.round(dbm), floor, 0)
    if representation.kind == "relative":
        # The readings relative to their scan's strongest, which sits at 0 dBm: what a phone
        # reading every access point -reference_dbm dB louder records. The firmware moves them
        # back by reference_dbm, so its relative step is exercised, not skipped.
        dbm = np.where(dbm > floor, dbm - representation.reference_dbm, floor)
    return dbm.astype(np.int16)


def table_inputs(X: np.ndarray, scaling: dict | None, io: TensorIO) -> tuple[InputTable, np.ndarray] | None:
    """``(table, dbm int8 [..., F])`` when the table turns the windows' integer dBm into exactly
    the host's quantised inputs, else None (no representation, too large, or not integer dBm)."""
    if not scaling or ("representation" not in scaling and "min" not in scaling):
        return None
    X = np.asarray(X, dtype=np.float32)
    table = build_input_table(scaling, X.shape[-1], io)
    if table is None or table.floor < -128:
        return None
    dbm = dbm_of_inputs(X, scaling)
    if not np.array_equal(table.lookup(dbm), quantize(X, io)):
        return None
    return table, dbm.astype(np.int8)
