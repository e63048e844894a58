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
``relative`` ``powed`` of each reading relative to the strongest of its scan (or time step):
             ``dbm - max_heard + reference_dbm``, so the strongest reading always sits at
             ``reference_dbm`` and readings more than ``reference_dbm - floor`` dB below it
             count as not heard. A phone whose antenna reads every access point k dB
             higher or lower gives the same input (the signal-strength-difference idea of
             Hossain et al., "SSD: A Robust RF Location Fingerprint Addressing Mobile
             Devices' Heterogeneity", IEEE TMC 2013).

``floor`` is the dataset's "not heard" value (-105 dBm for UJIIndoorLoc, -120 dBm in-home):
not heard is 0 in every representation, and a reading at or below it is not heard.

For the firmware, ``deployment.input_table`` turns the representation and the model's input
quantisation into one int8 entry per integer dBm from ``floor`` to 0 (one table shared by
all access points for ``dbm``, ``powed`` and ``relative``): the MCU indexes a table instead of doing float
maths, and the table is built by the same functions the host uses, so both agree bit for bit.
For ``relative`` the firmware first moves each scan's readings by ``reference_dbm - max_heard``
(integer dBm in, integer dBm out), then indexes the same kind of table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tinyloc_tf.errors import DataError

REPRESENTATIONS = ("minmax", "dbm", "powed", "relative")
POWED_EXPONENT = math.e
#: Where ``relative`` puts each scan's strongest reading: chosen by grouped cross-validation
#: over UJIIndoorLoc's trainingData (``scripts/choose_representation.py``, docs/data.md).
RELATIVE_REFERENCE_DBM = -50.0
REPRESENTATION_HELP = ("RSSI -> input in [0, 1]: powed (default), dbm (physical range), minmax (per AP) or relative "
                       "(powed, relative to each scan's strongest reading); docs/data.md")


@dataclass(frozen=True)
class Representation:
    """One input representation with its fitted parameters.

    ``kind`` one of :data:`REPRESENTATIONS`; ``floor_dbm`` the not-heard value; ``exponent``
    (powed, relative); ``reference_dbm`` (relative); ``minimum``/``maximum`` per feature
    (minmax only, ``[F]`` dBm).
    """

    kind: str
    floor_dbm: float
    exponent: float = 1.0
    reference_dbm: float | None = None
    minimum: np.ndarray | None = field(default=None, compare=False)
    maximum: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.kind not in REPRESENTATIONS:
            raise DataError(f"unknown input representation {self.kind!r}; expected one of {', '.join(REPRESENTATIONS)}")
        if not self.floor_dbm < 0:
            raise DataError(f"representation floor must be a negative dBm value, got {self.floor_dbm}")
        if self.kind == "minmax" and (self.minimum is None or self.maximum is None):
            raise DataError("the minmax representation needs per-feature minimum and maximum")
        if self.kind == "relative" and not (self.reference_dbm is not None
                                            and self.floor_dbm < self.reference_dbm <= 0):
            raise DataError(f"the relative representation needs reference_dbm in ({self.floor_dbm:g}, 0], "
                            f"got {self.reference_dbm}")

    @property
    def shared_table(self) -> bool:
        """True when one dBm -> input table serves every access point."""
        return self.kind != "minmax"

    def relative_to_strongest(self, dbm: np.ndarray) -> np.ndarray:
        """``relative`` only: ``dbm [..., F]`` moved so each row's strongest heard reading sits at
        ``reference_dbm``; not-heard cells stay at the floor, a row with none heard is unchanged."""
        dbm = np.asarray(dbm, dtype=np.float64)
        heard = dbm > self.floor_dbm
        strongest = np.where(heard, dbm, -np.inf).max(axis=-1, keepdims=True)
        shift = np.where(np.isfinite(strongest), self.reference_dbm - strongest, 0.0)
        return np.where(heard, dbm + shift, self.floor_dbm)

    def apply(self, dbm: np.ndarray) -> tuple[np.ndarray, int]:
        """``dbm [..., F]`` -> float32 inputs in [0, 1], and how many cells were clipped."""
        if self.kind == "relative":
            dbm = self.relative_to_strongest(dbm)
        return self.scale(dbm)

    def scale(self, dbm: np.ndarray) -> tuple[np.ndarray, int]:
        """Cell by cell, dBm -> inputs (the firmware's table); for ``relative``, of dBm already
        :meth:`relative_to_strongest`. Also returns how many cells were clipped."""
        dbm = np.asarray(dbm, dtype=np.float64)
        if self.kind == "minmax":
            value = (dbm - self.minimum) / (self.maximum - self.minimum)
        else:
            value = (dbm - self.floor_dbm) / -self.floor_dbm
        clipped = int(np.count_nonzero((value < 0) | (value > 1)))
        value = np.clip(value, 0.0, 1.0)
        if self.kind in ("powed", "relative"):
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
        elif self.kind == "powed":
            meta.update(exponent=float(self.exponent),
                        formula="clip((rssi - not_heard_dbm) / -not_heard_dbm, 0, 1) ** exponent")
        else:
            meta.update(exponent=float(self.exponent), reference_dbm=float(self.reference_dbm),
                        formula="clip((rssi - max_heard + reference_dbm - not_heard_dbm) / -not_heard_dbm, 0, 1) "
                                "** exponent; max_heard: the strongest reading of the scan (time step)")
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
        exponent = float(scaling.get("exponent", 1.0 if kind == "dbm" else POWED_EXPONENT))
        if kind == "relative":
            if "reference_dbm" not in scaling:
                raise DataError("scaling: the relative representation needs reference_dbm")
            return cls(kind, floor, exponent=exponent, reference_dbm=float(scaling["reference_dbm"]))
        return cls(kind, floor, exponent=exponent)


def fit_representation(kind: str, train_dbm: np.ndarray, floor_dbm: float,
                       reference_dbm: float = RELATIVE_REFERENCE_DBM) -> tuple[Representation, np.ndarray]:
    """Fit ``kind`` on the train split's dBm ``[..., F]``.

    Returns the representation and a bool ``[F]`` mask of features whose train range is empty
    (never heard, or one constant reading). For ``minmax`` those are scaled over the physical
    range ``floor..0`` instead; the other kinds have no fitted parameters.
    """
    flat = np.asarray(train_dbm, dtype=np.float64).reshape(-1, np.shape(train_dbm)[-1])
    minimum, maximum = flat.min(axis=0), flat.max(axis=0)
    constant = maximum <= minimum
    if kind == "relative":
        return Representation(kind, floor_dbm, exponent=POWED_EXPONENT, reference_dbm=reference_dbm), constant
    if kind != "minmax":
        return Representation(kind, floor_dbm, exponent=POWED_EXPONENT if kind == "powed" else 1.0), constant
    minimum = np.where(constant, floor_dbm, minimum)
    maximum = np.where(constant, 0.0, maximum)
    return Representation(kind, floor_dbm, minimum=minimum, maximum=maximum), constant
