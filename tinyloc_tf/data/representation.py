"""Input representations: how an RSSI reading in dBm becomes a model input in [0, 1].

Chosen at prepare time (``tinyloc data prepare ... --representation``), recorded in
``meta.json`` under ``scaling``, carried into the ``.tflite`` metadata and the model card,
and applied the same way by the host, the training-time augmentation and the firmware.

``minmax``   per access point, ``(dbm - min_ap) / (max_ap - min_ap)`` with min/max fitted on
             the train split, clipped to [0, 1]. An AP heard only weakly in training is
             stretched to the full range, and test readings outside it clip.
``dbm``      the physical range, one scale for every AP: ``(dbm - floor) / -floor``.
``powed``    the physical range raised to ``exponent`` (e, after Torres-Sospedra et al.,
             "Comprehensive analysis of distance and similarity measures for Wi-Fi
             fingerprinting indoor positioning systems", 2015): strong readings, which
             locate best, get more of the range than weak ones.

``floor`` is the dataset's "not heard" value (-105 dBm for UJIIndoorLoc, -120 dBm in-home):
not heard is 0 in every representation.

For the firmware, ``deployment.input_table`` turns the representation and the model's input
quantisation into one int8 entry per integer dBm from ``floor`` to 0 (one table shared by
all access points for ``dbm`` and ``powed``): the MCU indexes a table instead of doing float
maths, and the table is built by the same functions the host uses, so both agree bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tinyloc_tf.errors import DataError

REPRESENTATIONS = ("minmax", "dbm", "powed")
POWED_EXPONENT = math.e


@dataclass(frozen=True)
class Representation:
    """One input representation with its fitted parameters.

    ``kind`` one of :data:`REPRESENTATIONS`; ``floor_dbm`` the not-heard value; ``exponent``
    (powed); ``minimum``/``maximum`` per feature (minmax only, ``[F]`` dBm).
    """

    kind: str
    floor_dbm: float
    exponent: float = 1.0
    minimum: np.ndarray | None = field(default=None, compare=False)
    maximum: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.kind not in REPRESENTATIONS:
            raise DataError(f"unknown input representation {self.kind!r}; expected one of {', '.join(REPRESENTATIONS)}")
        if not self.floor_dbm < 0:
            raise DataError(f"representation floor must be a negative dBm value, got {self.floor_dbm}")
        if self.kind == "minmax" and (self.minimum is None or self.maximum is None):
            raise DataError("the minmax representation needs per-feature minimum and maximum")

    @property
    def shared_table(self) -> bool:
        """True when one dBm -> input table serves every access point."""
        return self.kind != "minmax"

    def apply(self, dbm: np.ndarray) -> tuple[np.ndarray, int]:
        """``dbm [..., F]`` -> float32 inputs in [0, 1], and how many cells were clipped."""
        dbm = np.asarray(dbm, dtype=np.float64)
        if self.kind == "minmax":
            value = (dbm - self.minimum) / (self.maximum - self.minimum)
        else:
            value = (dbm - self.floor_dbm) / -self.floor_dbm
        clipped = int(np.count_nonzero((value < 0) | (value > 1)))
        value = np.clip(value, 0.0, 1.0)
        if self.kind == "powed":
            value = value**self.exponent
        return value.astype(np.float32), clipped

    def to_meta(self) -> dict:
        """The ``meta.json`` ``scaling`` fields that rebuild this representation."""
        meta = {"representation": self.kind, "not_heard_dbm": float(self.floor_dbm), "unit": "dBm"}
        if self.kind == "minmax":
            meta.update(min=np.asarray(self.minimum).tolist(), max=np.asarray(self.maximum).tolist(),
                        formula="clip((rssi - min) / (max - min), 0, 1); min/max per feature from the train split")
        elif self.kind == "dbm":
            meta["formula"] = "clip((rssi - not_heard_dbm) / -not_heard_dbm, 0, 1)"
        else:
            meta.update(exponent=float(self.exponent),
                        formula="clip((rssi - not_heard_dbm) / -not_heard_dbm, 0, 1) ** exponent")
        return meta

    @classmethod
    def from_meta(cls, scaling: dict) -> "Representation":
        """Rebuild from ``meta["scaling"]``; folders prepared before representations existed
        hold only ``min``/``max`` and are ``minmax``."""
        kind = scaling.get("representation", "minmax")
        floor = float(scaling.get("not_heard_dbm", -105.0))
        if kind == "minmax":
            return cls(kind, floor, minimum=np.asarray(scaling["min"], dtype=np.float64),
                       maximum=np.asarray(scaling["max"], dtype=np.float64))
        return cls(kind, floor, exponent=float(scaling.get("exponent", POWED_EXPONENT if kind == "powed" else 1.0)))


def fit_representation(kind: str, train_dbm: np.ndarray, floor_dbm: float) -> tuple[Representation, np.ndarray]:
    """Fit ``kind`` on the train split's dBm ``[..., F]``.

    Returns the representation and a bool ``[F]`` mask of features whose train range is empty
    (never heard, or one constant reading). For ``minmax`` those are scaled over the physical
    range ``floor..0`` instead; the other kinds have no fitted parameters.
    """
    flat = np.asarray(train_dbm, dtype=np.float64).reshape(-1, np.shape(train_dbm)[-1])
    minimum, maximum = flat.min(axis=0), flat.max(axis=0)
    constant = maximum <= minimum
    if kind != "minmax":
        return Representation(kind, floor_dbm, exponent=POWED_EXPONENT if kind == "powed" else 1.0), constant
    minimum = np.where(constant, floor_dbm, minimum)
    maximum = np.where(constant, 0.0, maximum)
    return Representation(kind, floor_dbm, minimum=minimum, maximum=maximum), constant
